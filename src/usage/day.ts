/**
 * The day a usage row counts on: a calendar date in one configured time zone (USAGE_TIME_ZONE,
 * an IANA name; UTC by default), so "today's budget" starts at the operators' midnight.
 *
 * UTC, the default, needs no `Intl.DateTimeFormat`: the first formatter loads ICU's calendar and
 * time zone data, about 8 MB of resident memory that a bridge left at UTC would hold for nothing.
 *
 * @module
 */

const UTC = "UTC";

/** A formatter per time zone; `Intl.DateTimeFormat` is costly to build and safe to reuse. */
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timeZone);
  if (!formatter) {
    // en-CA formats as YYYY-MM-DD, which also sorts as text.
    formatter = new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" });
    formatters.set(timeZone, formatter);
  }
  return formatter;
}

/** `YYYY-MM-DD` of `epochMs` in `timeZone`. Throws RangeError for an unknown zone. */
export function dayOf(epochMs: number, timeZone: string): string {
  if (timeZone === UTC) return new Date(epochMs).toISOString().slice(0, 10);
  return formatterFor(timeZone).format(new Date(epochMs));
}

/** True when `timeZone` is an IANA name this runtime knows. */
export function isTimeZone(timeZone: string): boolean {
  if (timeZone === UTC) return true;
  try {
    formatterFor(timeZone);
    return true;
  } catch {
    return false;
  }
}

/** The `count` days ending with the day of `epochMs`, oldest first. */
export function lastDays(epochMs: number, count: number, timeZone: string): string[] {
  const days: string[] = [];
  // Step back in 24 h slices from noon of today: daylight-saving shifts never skip or repeat a date.
  const today = dayOf(epochMs, timeZone);
  const noon = Date.parse(`${today}T12:00:00Z`);
  for (let index = count - 1; index >= 0; index -= 1) {
    days.push(new Date(noon - index * 86_400_000).toISOString().slice(0, 10));
  }
  return days;
}
