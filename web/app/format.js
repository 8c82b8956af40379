// How quantities and times read on screen. Internally everything is SI and UTC (BRIEF §4); the
// location's `units` picks gallons and pounds or litres and kilograms.

const LITRES_PER_GALLON = 3.785411784;
const KG_PER_LB = 0.45359237;

export const toGallons = (litres) => litres / LITRES_PER_GALLON;
export const toLbs = (kg) => kg / KG_PER_LB;
export const fromLbs = (lbs) => lbs * KG_PER_LB;

export function volume(litres, units, digits = 1) {
  if (litres === null || litres === undefined) return '—';
  return units === 'metric'
    ? `${litres.toFixed(digits)} L`
    : `${toGallons(litres).toFixed(digits)} gal`;
}

export function weight(kg, units, digits = 1) {
  if (kg === null || kg === undefined) return '—';
  return units === 'metric' ? `${kg.toFixed(digits)} kg` : `${toLbs(kg).toFixed(digits)} lb`;
}

export const weightUnit = (units) => (units === 'metric' ? 'kg' : 'lb');

export function rate(litresPerHour, units) {
  if (litresPerHour === null || litresPerHour === undefined) return '—';
  return `${volume(litresPerHour, units)}/h`;
}

export function pct(value, digits = 0) {
  return value === null || value === undefined ? '—' : `${value.toFixed(digits)} %`;
}

export function hours(h) {
  if (h === null || h === undefined || !Number.isFinite(h)) return null;
  if (h < 1) return `${Math.max(1, Math.round(h * 60))} min`;
  if (h < 48) return `${h.toFixed(h < 10 ? 1 : 0)} h`;
  return `${Math.round(h / 24)} days`;
}

export function ago(iso, now = Date.now()) {
  if (!iso) return 'never';
  const seconds = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (seconds < 45) return 'just now';
  if (seconds < 90) return '1 min ago';
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400 * 1.5) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

export function dateTime(iso, timeZone) {
  if (!iso) return '—';
  try {
    return new Intl.DateTimeFormat(undefined, {
      dateStyle: 'medium',
      timeStyle: 'short',
      timeZone: timeZone || undefined,
    }).format(new Date(iso));
  } catch {
    return new Date(iso).toLocaleString();
  }
}

export function clock(timeZone, now = new Date()) {
  try {
    return new Intl.DateTimeFormat(undefined, { timeStyle: 'short', timeZone: timeZone || undefined }).format(now);
  } catch {
    return now.toLocaleTimeString();
  }
}

/** `user:usr-1 (sam@bar.example)` → `sam@bar.example` (the audit's actor format). */
export function actorName(actor) {
  if (!actor) return '';
  const named = /\(([^)]*)\)$/.exec(actor);
  return named ? named[1] : actor;
}

export const isoFromMs = (ms) => new Date(ms).toISOString();

/** Human names of alert kinds (the seeds' ids). */
export const ALERT_KINDS = {
  low_keg: 'Low keg',
  scale_offline: 'Scale offline',
  low_battery: 'Low battery',
  calibration_drift: 'Calibration drift',
  stale_reading: 'No recent readings',
};

export const COMMAND_NAMES = {
  tare_empty: 'Tare empty',
  tare_full: 'Tare full',
  identify: 'Identify',
  maintenance_enter: 'Maintenance on',
  maintenance_exit: 'Maintenance off',
  calibrate: 'Calibrate',
  set_config: 'Set config',
  reboot: 'Reboot',
};

/** Reference keg types (BRIEF §4): full and empty weights in pounds. */
export const KEG_TYPES = {
  half_barrel: { label: 'Half barrel (15.5 gal)', fullLbs: 161.5, emptyLbs: 29.0 },
  quarter_barrel: { label: 'Quarter barrel (7.75 gal)', fullLbs: 87.0, emptyLbs: 22.0 },
  sixth_barrel: { label: 'Sixth barrel (5.17 gal)', fullLbs: 61.0, emptyLbs: 16.5 },
  slim_quarter: { label: 'Slim quarter (7.75 gal)', fullLbs: 87.0, emptyLbs: 20.0 },
};

export const tapNumber = (tapId) => {
  const n = /#TAP#(\d+)$/.exec(tapId || '');
  return n ? Number(n[1]) : null;
};
