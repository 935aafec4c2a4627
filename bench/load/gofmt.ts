// Go's fmt verbs that fortio's report uses: %g / %.Ng (strconv 'g': shortest or N significant
// digits, trailing zeros dropped, exponent form when exp < -4 or exp >= precision) and %t.
// fortio's text report is read by scripts; the numbers must look as Go prints them.

function digitsOf(x: number, prec: number): { digs: string; dp: number } {
  const e = prec < 0 ? x.toExponential() : x.toExponential(Math.max(0, prec - 1));
  const [mant, ex] = e.split('e');
  const digs = mant.replace('.', '').replace(/0+$/, '') || '0';
  return { digs, dp: Number(ex) + 1 };
}

/** Go's %g (prec < 0) or %.<prec>g of a float64. */
export function goG(x: number, prec = -1): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return '+Inf';
  if (x === -Infinity) return '-Inf';
  if (x === 0) return Object.is(x, -0) ? '-0' : '0';
  const neg = x < 0;
  const { digs, dp } = digitsOf(Math.abs(x), prec === 0 ? 1 : prec);
  const nd = digs.length;
  let eprec = prec < 0 ? 6 : prec === 0 ? 1 : prec;
  if (prec >= 0 && eprec > nd && nd >= dp) eprec = nd;
  const exp = dp - 1;
  let out: string;
  if (exp < -4 || exp >= eprec) {
    const ae = Math.abs(exp);
    out = `${digs[0]}${nd > 1 ? `.${digs.slice(1)}` : ''}e${exp < 0 ? '-' : '+'}${ae < 10 ? `0${ae}` : ae}`;
  } else if (dp <= 0) {
    out = `0.${'0'.repeat(-dp)}${digs}`;
  } else if (dp >= nd) {
    out = digs + '0'.repeat(dp - nd);
  } else {
    out = `${digs.slice(0, dp)}.${digs.slice(dp)}`;
  }
  return neg ? `-${out}` : out;
}

/** %.<n>f */
export const goF = (x: number, n: number): string => (Number.isFinite(x) ? x.toFixed(n) : goG(x));
