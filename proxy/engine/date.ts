// The HTTP Date (IMF-fixdate, RFC 9110 section 5.6.7) of the current second, formatted at most
// once a second however many responses ask for it (no timer: an idle proxy costs nothing).
let cachedSecond = -1;
let cached = '';

export function httpDate(): string {
  const now = Date.now();
  const sec = Math.floor(now / 1000);
  if (sec !== cachedSecond) {
    cachedSecond = sec;
    cached = new Date(sec * 1000).toUTCString(); // "Tue, 01 Dec 2026 21:45:22 GMT" is IMF-fixdate
  }
  return cached;
}
