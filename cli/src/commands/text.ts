/**
 * Text from a log, a site name or a coordinator's answer, safe to print on a terminal: control
 * characters (C0 but newline and tab, DEL, C1: the starts of escape sequences) shown as '?'.
 */
export function printable(t: string): string {
  let out = '';
  for (const ch of t) {
    const c = ch.codePointAt(0)!;
    out += (c < 0x20 && ch !== '\n' && ch !== '\t') || (c >= 0x7f && c <= 0x9f) ? '?' : ch;
  }
  return out;
}
