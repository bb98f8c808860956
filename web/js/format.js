// Units: bytes in decimal multiples (as the plans are written), rates in bit/s.

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];

export function formatBytes(n) {
  if (n === null || n === undefined) return '—';
  let v = Number(n);
  let i = 0;
  while (Math.abs(v) >= 1000 && i < UNITS.length - 1) {
    v /= 1000;
    i += 1;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${UNITS[i]}`;
}

export function formatRate(bps) {
  if (!bps) return '—';
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(1)} Mbit/s`;
  return `${(bps / 1e3).toFixed(0)} kbit/s`;
}

const MULT = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 };

// "10 GB", "1.5GiB", "500000" -> bytes (an integer); null when not a size.
export function parseBytes(text) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text || '');
  if (!m) return null;
  const unit = (m[2] || 'b').toLowerCase();
  const mult = MULT[unit === 'k' ? 'kb' : unit === 'm' ? 'mb' : unit === 'g' ? 'gb' : unit === 't' ? 'tb' : unit];
  if (!mult) return null;
  const bytes = Math.round(Number(m[1]) * mult);
  return Number.isSafeInteger(bytes) ? bytes : null;
}

export function formatTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function percent(part, whole) {
  if (!whole) return null;
  return (100 * part) / whole;
}
