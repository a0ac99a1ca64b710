/**
 * Just enough PNG to scale a large plot down before it reaches an agent:
 * decode (all colour types and bit depths, not interlaced), box-filter
 * downscale, encode as 8-bit PNG. Done here rather than with PIL in the
 * kernel so it works while the kernel is busy or dead, needs nothing in the
 * kernel's environment, and never runs hidden code in the agent's namespace;
 * the notebook keeps the original.
 */

import { deflateSync, inflateSync } from "node:zlib";

/** 8-bit pixels, `channels` per pixel (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA). */
export interface Raster {
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
  data: Uint8Array;
}

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

/** Width and height from a PNG's header, or undefined when it is not a PNG. */
export function pngSize(bytes: Uint8Array): { width: number; height: number } | undefined {
  if (bytes.length < 24 || !SIGNATURE.every((b, i) => bytes[i] === b)) return undefined;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { width: v.getUint32(16), height: v.getUint32(20) };
}

/** Decodes a PNG; throws on what it does not handle (interlaced images). */
export function decodePng(bytes: Uint8Array): Raster {
  if (!pngSize(bytes)) throw new Error("not a PNG");
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let width = 0, height = 0, depth = 0, colorType = 0, interlace = 0;
  let palette: Uint8Array | undefined;
  let trns: Uint8Array | undefined;
  const idat: Uint8Array[] = [];
  for (let off = 8; off + 8 <= bytes.length;) {
    const len = v.getUint32(off);
    const type = String.fromCharCode(...bytes.subarray(off + 4, off + 8));
    const body = bytes.subarray(off + 8, off + 8 + len);
    if (type === "IHDR") {
      width = v.getUint32(off + 8);
      height = v.getUint32(off + 12);
      depth = body[8];
      colorType = body[9];
      interlace = body[12];
    } else if (type === "PLTE") palette = body;
    else if (type === "tRNS") trns = body;
    else if (type === "IDAT") idat.push(body);
    else if (type === "IEND") break;
    off += 12 + len;
  }
  if (interlace) throw new Error("interlaced PNG");
  const samples = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colorType];
  if (!samples || !width || !height) throw new Error(`unsupported PNG (colour type ${colorType})`);
  const raw = new Uint8Array(inflateSync(concat(idat)));
  const stride = Math.ceil((width * samples * depth) / 8);
  const bpp = Math.max(1, (samples * depth) >> 3);
  const rows = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = rows.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? rows.subarray((y - 1) * stride, y * stride) : undefined;
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? out[x - bpp] : 0;
      const b = prev ? prev[x] : 0;
      const c = prev && x >= bpp ? prev[x - bpp] : 0;
      let p = 0;
      if (filter === 1) p = a;
      else if (filter === 2) p = b;
      else if (filter === 3) p = (a + b) >> 1;
      else if (filter === 4) p = paeth(a, b, c);
      out[x] = (src[x] + p) & 0xff;
    }
  }
  const channels = colorType === 3 ? (trns ? 4 : 3) : samples as 1 | 2 | 3 | 4;
  const data = new Uint8Array(width * height * channels);
  const maxVal = (1 << Math.min(depth, 8)) - 1;
  for (let y = 0; y < height; y++) {
    const row = rows.subarray(y * stride, (y + 1) * stride);
    for (let x = 0; x < width; x++) {
      for (let s = 0; s < samples; s++) {
        const i = x * samples + s;
        let val: number;
        if (depth === 16) val = row[i * 2];
        else if (depth === 8) val = row[i];
        else {
          const bit = i * depth;
          val = (row[bit >> 3] >> (8 - depth - (bit & 7))) & maxVal;
        }
        const o = (y * width + x) * channels;
        if (colorType === 3) {
          data[o] = palette?.[val * 3] ?? 0;
          data[o + 1] = palette?.[val * 3 + 1] ?? 0;
          data[o + 2] = palette?.[val * 3 + 2] ?? 0;
          if (trns) data[o + 3] = val < trns.length ? trns[val] : 255;
        } else {
          data[o + s] = depth < 8 ? Math.round((val * 255) / maxVal) : val;
        }
      }
    }
  }
  return { width, height, channels, data };
}

/** Averages boxes of pixels so that neither side exceeds `maxSide`. */
export function downscale(img: Raster, maxSide: number): Raster {
  const f = Math.max(img.width, img.height) / maxSide;
  if (f <= 1) return img;
  const w = Math.max(1, Math.round(img.width / f));
  const h = Math.max(1, Math.round(img.height / f));
  const ch = img.channels;
  const out = new Uint8Array(w * h * ch);
  const sum = new Float64Array(ch);
  for (let y = 0; y < h; y++) {
    const y0 = Math.floor((y * img.height) / h);
    const y1 = Math.max(y0 + 1, Math.floor(((y + 1) * img.height) / h));
    for (let x = 0; x < w; x++) {
      const x0 = Math.floor((x * img.width) / w);
      const x1 = Math.max(x0 + 1, Math.floor(((x + 1) * img.width) / w));
      sum.fill(0);
      for (let sy = y0; sy < y1; sy++) {
        let i = (sy * img.width + x0) * ch;
        for (let sx = x0; sx < x1; sx++) {
          for (let c = 0; c < ch; c++) sum[c] += img.data[i++];
        }
      }
      const n = (y1 - y0) * (x1 - x0);
      const o = (y * w + x) * ch;
      for (let c = 0; c < ch; c++) out[o + c] = Math.round(sum[c] / n);
    }
  }
  return { width: w, height: h, channels: ch, data: out };
}

/** Encodes 8-bit pixels as a PNG (per row: no filter or Sub, whichever looks smaller). */
export function encodePng(img: Raster): Uint8Array {
  const { width, height, channels, data } = img;
  const stride = width * channels;
  const raw = new Uint8Array((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = data.subarray(y * stride, (y + 1) * stride);
    let costNone = 0, costSub = 0;
    for (let x = 0; x < stride; x++) {
      costNone += signedCost(row[x]);
      costSub += signedCost((row[x] - (x >= channels ? row[x - channels] : 0)) & 0xff);
    }
    const o = y * (stride + 1);
    if (costSub < costNone) {
      raw[o] = 1;
      for (let x = 0; x < stride; x++) {
        raw[o + 1 + x] = (row[x] - (x >= channels ? row[x - channels] : 0)) & 0xff;
      }
    } else {
      raw[o] = 0;
      raw.set(row, o + 1);
    }
  }
  const ihdr = new Uint8Array(13);
  const hv = new DataView(ihdr.buffer);
  hv.setUint32(0, width);
  hv.setUint32(4, height);
  ihdr[8] = 8;
  ihdr[9] = { 1: 0, 2: 4, 3: 2, 4: 6 }[channels];
  return concat([
    new Uint8Array(SIGNATURE),
    chunk("IHDR", ihdr),
    chunk("IDAT", new Uint8Array(deflateSync(raw, { level: 9 }))),
    chunk("IEND", new Uint8Array(0)),
  ]);
}

/** What {@link shrinkPng} did. */
export interface Shrunk {
  bytes: Uint8Array;
  width: number;
  height: number;
  /** The original size, when the image was scaled. */
  from?: { width: number; height: number; bytes: number };
}

/**
 * Scales a PNG down until neither side exceeds `maxSide` and it is at most
 * `maxBytes` long; returns it untouched when it already fits.
 */
export function shrinkPng(bytes: Uint8Array, maxSide: number, maxBytes: number): Shrunk {
  const size = pngSize(bytes);
  if (!size) throw new Error("not a PNG");
  if (Math.max(size.width, size.height) <= maxSide && bytes.length <= maxBytes) {
    return { bytes, ...size };
  }
  const img = decodePng(bytes);
  let side = Math.min(maxSide, Math.max(img.width, img.height));
  let out = downscale(img, side);
  let encoded = encodePng(out);
  // Busy images compress badly: shrink further until the bytes fit too.
  for (let i = 0; i < 4 && encoded.length > maxBytes && side > 64; i++) {
    side = Math.max(64, Math.floor(side * Math.sqrt(maxBytes / encoded.length) * 0.95));
    out = downscale(img, side);
    encoded = encodePng(out);
  }
  return {
    bytes: encoded,
    width: out.width,
    height: out.height,
    from: { ...size, bytes: bytes.length },
  };
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

function signedCost(v: number): number {
  return v < 128 ? v : 256 - v;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function chunk(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + body.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, body.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(body, 8);
  v.setUint32(8 + body.length, crc32(out.subarray(4, 8 + body.length)));
  return out;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
