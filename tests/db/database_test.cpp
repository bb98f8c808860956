#include <doctest/doctest.h>

#include "db_fixture.hpp"
#include "store/subscriber_store.hpp"

using namespace ctquota;
using ctquota::dbtest::ScratchDatabase;

namespace {

std::string connect_error(const std::string& url) {
    store::Database db(url);
    try {
        db.connection();
    } catch (const store::DatabaseError& e) {
        return e.what();
    }
    FAIL("connecting to '" << db.display_url() << "' should have failed");
    return {};
}

}  // namespace

TEST_CASE("connection secrets are found in URIs and key=value strings") {
    using V = std::vector<std::string>;
    CHECK(store::connection_secrets("postgresql://u:pw@h:5432/db") == V{"pw"});
    CHECK(store::connection_secrets("postgres://u@h/db?password=x%41y&sslmode=require") ==
          V{"x%41y", "xAy"});
    CHECK(store::connection_secrets("host=h password = 'a b\\'c' user=u") == V{"a b\\'c", "a b'c"});
    CHECK(store::connection_secrets("host=h password=plain") == V{"plain"});
    CHECK(store::connection_secrets("postgresql:///ctquota?host=/tmp/x&user=postgres").empty());
    CHECK(store::connection_secrets("host=/tmp/x user=postgres").empty());
}

TEST_CASE("connection failures are DatabaseError and never show the password") {
    // Port 1 on loopback refuses; the malformed escape makes libpq quote the password back.
    for (const std::string url :
         {"postgresql://ctq:s3cr%zzet@127.0.0.1:1/ctquota", "postgresql://ctq:s3cret@127.0.0.1:1/x",
          "postgresql://127.0.0.1:1/x?password=s3cret&connect_timeout=2",
          "host=127.0.0.1 port=1 user=ctq password='s3cret' connect_timeout=2",
          "host=127.0.0.1 port=notaport password=s3cret"}) {
        CAPTURE(url);
        const auto message = connect_error(url);
        CHECK(message.find("cannot connect to PostgreSQL") != std::string::npos);
        CHECK(message.find("s3cr") == std::string::npos);
        CHECK(message.find("***") != std::string::npos);  // the URL is shown, masked
    }
    store::Database db("postgresql://ctq:s3cret@db.example/ctquota");
    CHECK(db.display_url() == "postgresql://ctq:***@db.example/ctquota");
}

TEST_CASE("a connection the server closed while idle is replaced before use") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    subscribers.add("alice", {}, dbtest::now_us());
    const int pid = scratch.db().connection().backendpid();
    CHECK(scratch.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = " +
                         std::to_string(pid)) == 1);
    scratch.exec("SELECT pg_terminate_backend(" + std::to_string(pid) + ", 5000)");

    const auto list = subscribers.list();  // no failed call: a new connection
    REQUIRE(list.size() == 1);
    CHECK(list[0].external_id == "alice");
    CHECK(scratch.db().connection().backendpid() != pid);
}

TEST_CASE("a connection lost during a call fails that call; the next one reconnects") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    const int pid = scratch.db().connection().backendpid();
    scratch.exec(
        "CREATE FUNCTION die() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(1); "
        "RETURN NEW; END $$;"
        "CREATE TRIGGER die BEFORE INSERT ON subscribers FOR EACH ROW EXECUTE FUNCTION die()");
    CHECK_THROWS_WITH_AS(subscribers.add("alice", {}, dbtest::now_us()),
                         doctest::Contains("adding a subscriber: connection lost"),
                         store::DatabaseError);
    scratch.exec("DROP TRIGGER die ON subscribers");
    subscribers.add("alice", {}, dbtest::now_us());
    CHECK(scratch.db().connection().backendpid() != pid);
    CHECK(scratch.count("subscribers") == 1);
}

TEST_CASE("SQL errors become DatabaseError naming the operation; the connection stays usable") {
    ScratchDatabase scratch;
    store::SubscriberStore subscribers(scratch.db());
    scratch.exec("ALTER TABLE subscriber_bindings RENAME TO subscriber_bindings_gone");
    try {
        subscribers.load_bindings(dbtest::now_us());
        FAIL("expected a DatabaseError");
    } catch (const store::DatabaseError& e) {
        const std::string what = e.what();
        CHECK(what.starts_with("loading address bindings: "));
        CHECK(what.find("subscriber_bindings") != std::string::npos);
        CHECK(what.find("SQLSTATE 42P01") != std::string::npos);
    }
    scratch.exec("ALTER TABLE subscriber_bindings_gone RENAME TO subscriber_bindings");
    CHECK(subscribers.load_bindings(dbtest::now_us()).empty());
}

TEST_CASE("a statement timeout, when asked for, holds for every session and survives reconnects") {
    ScratchDatabase scratch;
    store::Database db(scratch.url(), std::chrono::milliseconds(300));
    auto show = [&db] {
        pqxx::nontransaction tx(db.connection());
        return tx.exec1("SHOW statement_timeout")[0].as<std::string>();
    };
    CHECK(show() == "300ms");
    bool timed_out = false;
    try {
        pqxx::nontransaction tx(db.connection());
        tx.exec("SELECT pg_sleep(3)");
    } catch (const std::exception& e) {
        timed_out = std::string(e.what()).find("statement timeout") != std::string::npos;
    }
    CHECK(timed_out);
    db.reset();
    CHECK(show() == "300ms");  // a new session gets it too
    store::Database plain(scratch.url());
    pqxx::nontransaction tx(plain.connection());
    CHECK(tx.exec1("SHOW statement_timeout")[0].as<std::string>() == "0");
}
