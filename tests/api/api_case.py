"""The base of the api suite's test cases: clients for each role, the test
database, problem+json assertions and small builders."""

import datetime
import os
import unittest
import urllib.parse

from api_harness import Client, Db

SUBS = "/api/v1/subscribers"


def env(name):
    return os.environ[name]


class ApiTestCase(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.db = Db(env("CTQAPI_DB_URL"))
        cls.admin = Client(env("CTQAPI_ADMIN"))
        cls.billing = Client(env("CTQAPI_BILLING"))
        cls.anon = Client()

    def assertProblem(self, r, status):
        self.assertEqual(r.status, status, r)
        self.assertTrue(r.content_type.startswith("application/problem+json"), r)
        body = r.json()
        self.assertTrue(body["type"].startswith("urn:ctquota:problem:"), body)
        self.assertIsInstance(body["title"], str)
        self.assertEqual(body["status"], status, body)
        self.assertIsInstance(body["detail"], str)
        self.assertGreater(len(body["detail"]), 10, body)
        return body

    def create(self, sub_id, *addresses):
        r = self.admin.post(SUBS, {"id": sub_id, "addresses": list(addresses)})
        self.assertEqual(r.status, 201, r)
        return r.json()

    def month_start(self, offset=0):
        today = datetime.datetime.now(datetime.timezone.utc).date()
        y, m = today.year, today.month + offset
        while m < 1:
            y, m = y - 1, m + 12
        while m > 12:
            y, m = y + 1, m - 12
        return datetime.date(y, m, 1)

    def add_usage(self, sub_id, gateway, up, down, upp, downp, month=0):
        start = self.month_start(month).isoformat()
        self.db.exec(
            "INSERT INTO usage_period (subscriber_id, period_start, gateway_id, up_bytes, "
            f"down_bytes, up_packets, down_packets) SELECT id, '{start} 00:00:00+00', '{gateway}', "
            f"{up}, {down}, {upp}, {downp} FROM subscribers WHERE external_id = '{sub_id}'")

    def page_all(self, client, path, limit, extra="", headers=None, between_pages=None):
        """Follows next_cursor to the end; returns the pages' items."""
        items, cursor, pages = [], None, 0
        while True:
            if between_pages and items:
                between_pages(pages)
            q = f"?limit={limit}{extra}" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
            r = client.get(path + q, headers=headers)
            self.assertEqual(r.status, 200, r)
            body = r.json()
            self.assertLessEqual(len(body["items"]), limit)
            items += body["items"]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                return items, pages
