// Draws the app icons (web/icons/*.png) from the same shapes as icons/icon.svg: a keg with an
// amber level on the brand green. Run with `node web/tools/make-icons.mjs`; the PNGs are kept in
// the repository, so the build needs no image tools.
import { writeFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const out = join(dirname(fileURLToPath(import.meta.url)), '..', 'icons');
const BRAND = [0x14, 0x53, 0x2d];
const WHITE = [0xff, 0xff, 0xff];
const AMBER = [0xf5, 0x9e, 0x0b];

const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}
function png(size, rgba) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8;
  ihdr[9] = 6;
  const rows = Buffer.alloc((size * 4 + 1) * size);
  for (let y = 0; y < size; y += 1) rgba.copy(rows, y * (size * 4 + 1) + 1, y * size * 4, (y + 1) * size * 4);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(rows, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Inside a rounded rectangle (x, y, w, h, r), in unit coordinates. */
function inRounded(px, py, x, y, w, h, r) {
  if (px < x || py < y || px > x + w || py > y + h) return false;
  const cx = Math.min(Math.max(px, x + r), x + w - r);
  const cy = Math.min(Math.max(py, y + r), y + h - r);
  return (px - cx) ** 2 + (py - cy) ** 2 <= r * r;
}

/** The colour at a point of the unit square, or null (transparent). `scale` shrinks the glyph. */
function paint(px, py, { fullBleed, scale }) {
  const background = fullBleed || inRounded(px, py, 0, 0, 1, 1, 0.18);
  if (!background) return null;
  const g = (v) => 0.5 + (v - 0.5) * scale;
  const [bx, by, bw, bh, br] = [g(0.28), g(0.2), 0.44 * scale, 0.6 * scale, 0.08 * scale];
  const stroke = 0.05 * scale;
  if (!inRounded(px, py, bx, by, bw, bh, br)) return BRAND;
  if (!inRounded(px, py, bx + stroke, by + stroke, bw - 2 * stroke, bh - 2 * stroke, Math.max(0, br - stroke))) return WHITE;
  for (const hoop of [0.34, 0.66]) {
    if (Math.abs(py - (by + bh * hoop)) < stroke * 0.45) return WHITE;
  }
  return py > by + bh * 0.42 ? AMBER : BRAND;
}

function draw(size, options) {
  const rgba = Buffer.alloc(size * size * 4);
  const samples = 4;
  for (let y = 0; y < size; y += 1) {
    for (let x = 0; x < size; x += 1) {
      let [r, g, b, a] = [0, 0, 0, 0];
      for (let sy = 0; sy < samples; sy += 1) {
        for (let sx = 0; sx < samples; sx += 1) {
          const c = paint((x + (sx + 0.5) / samples) / size, (y + (sy + 0.5) / samples) / size, options);
          if (c) {
            r += c[0];
            g += c[1];
            b += c[2];
            a += 1;
          }
        }
      }
      const i = (y * size + x) * 4;
      const n = samples * samples;
      rgba[i] = a ? Math.round(r / a) : 0;
      rgba[i + 1] = a ? Math.round(g / a) : 0;
      rgba[i + 2] = a ? Math.round(b / a) : 0;
      rgba[i + 3] = Math.round((255 * a) / n);
    }
  }
  return png(size, rgba);
}

writeFileSync(join(out, 'icon-192.png'), draw(192, { fullBleed: false, scale: 1 }));
writeFileSync(join(out, 'icon-512.png'), draw(512, { fullBleed: false, scale: 1 }));
// Maskable: the launcher crops to a circle or squircle; keep the glyph in the inner 70 %.
writeFileSync(join(out, 'icon-maskable-512.png'), draw(512, { fullBleed: true, scale: 0.75 }));
