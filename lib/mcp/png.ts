/**
 * Scaling a large plot down before it reaches an agent. Decoding and
 * encoding are fast-png's (every colour type, bit depth and interlacing,
 * pure JS so the single binary needs nothing native); what is here is the
 * scaling: pixels to 8-bit, a box-filter downscale, and a loop that shrinks
 * until the bytes fit. Done here rather than with PIL in the kernel so it
 * works while the kernel is busy or dead, needs nothing in the kernel's
 * environment, and never runs hidden code in the agent's namespace; the
 * notebook keeps the original.
 */

import { convertIndexedToRgb, decode, type DecodedPng, encode } from "fast-png";

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

/** Decodes a PNG of any kind into 8-bit pixels. */
export function decodePng(bytes: Uint8Array): Raster {
  if (!pngSize(bytes)) throw new Error("not a PNG");
  return toRaster(decode(bytes));
}

/** fast-png's decoded image as 8-bit samples (palettes expanded, 16 bits cut, low depths spread). */
function toRaster(png: DecodedPng): Raster {
  const { width, height } = png;
  if (png.palette) {
    const rgb = convertIndexedToRgb(png);
    return { width, height, channels: png.palette[0].length as 3 | 4, data: rgb };
  }
  const channels = png.channels as 1 | 2 | 3 | 4;
  const n = width * height * channels;
  if (png.depth === 8) {
    const d = png.data;
    return {
      width,
      height,
      channels,
      data: d instanceof Uint8Array ? d : new Uint8Array(d.buffer, d.byteOffset, n),
    };
  }
  const data = new Uint8Array(n);
  if (png.depth === 16) {
    const d = png.data;
    for (let i = 0; i < n; i++) data[i] = d[i] >> 8;
    return { width, height, channels, data };
  }
  // 1, 2 or 4 bits (gray only): rows are packed and padded to whole bytes.
  const depth = png.depth;
  const max = (1 << depth) - 1;
  const stride = Math.ceil((width * channels * depth) / 8);
  const packed = png.data;
  for (let y = 0; y < height; y++) {
    for (let i = 0; i < width * channels; i++) {
      const bit = i * depth;
      const v = (packed[y * stride + (bit >> 3)] >> (8 - depth - (bit & 7))) & max;
      data[y * width * channels + i] = Math.round((v * 255) / max);
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

/** Encodes 8-bit pixels as a PNG. */
export function encodePng(img: Raster): Uint8Array {
  return encode(
    { width: img.width, height: img.height, channels: img.channels, depth: 8, data: img.data },
    { zlib: { level: 9 } },
  );
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
  return shrinkRaster(decodePng(bytes), maxSide, maxBytes, bytes.length);
}

/** Scales decoded pixels down (to `maxSide`, then until the PNG fits `maxBytes`). */
export function shrinkRaster(
  img: Raster,
  maxSide: number,
  maxBytes: number,
  originalBytes: number,
): Shrunk {
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
    from: { width: img.width, height: img.height, bytes: originalBytes },
  };
}
