// cleancut WebUI: a tiny zip writer (STORE only, no compression) for "Download all".
//
// Why in the browser and why home-made: the cutouts are already in the page, so building the zip
// here needs no second round trip to the server (which would have to receive every image again
// and keep them), works offline and with the strict Content-Security-Policy (no CDN, no
// third-party script). PNG and JPEG are compressed already, so STORE loses nothing worth having,
// and the whole format then fits in a page: local headers, the data, a central directory and its
// end record (PKWARE APPNOTE 4.3), with the CRC-32 every reader checks.
"use strict";

(function (global) {
  let table = null;

  // CRC-32 (ISO 3309, polynomial 0xEDB88320 reflected), as zip, PNG and gzip use it.
  function crc32(bytes) {
    if (!table) {
      table = new Uint32Array(256);
      for (let n = 0; n < 256; n++) {
        let c = n;
        for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
        table[n] = c >>> 0;
      }
    }
    let crc = 0xffffffff;
    for (let i = 0; i < bytes.length; i++) crc = table[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
    return (crc ^ 0xffffffff) >>> 0;
  }

  function dosTime(date) {
    return ((date.getHours() << 11) | (date.getMinutes() << 5) | (date.getSeconds() >> 1)) & 0xffff;
  }

  function dosDate(date) {
    const year = Math.max(1980, Math.min(2107, date.getFullYear()));
    return (((year - 1980) << 9) | ((date.getMonth() + 1) << 5) | date.getDate()) & 0xffff;
  }

  // A Blob holding a zip of `files`: [{name: string, data: Uint8Array}], stored in that order.
  // Names are UTF-8 (general purpose flag bit 11). No zip64: the page refuses past 4 GiB.
  function makeZip(files, date) {
    const when = date || new Date();
    const time = dosTime(when);
    const day = dosDate(when);
    const encoder = new TextEncoder();
    const parts = [];
    const central = [];
    let offset = 0;
    for (const file of files) {
      const name = encoder.encode(file.name);
      const data = file.data;
      const crc = crc32(data);
      const local = new DataView(new ArrayBuffer(30));
      local.setUint32(0, 0x04034b50, true); // local file header signature
      local.setUint16(4, 20, true); // version needed: 2.0
      local.setUint16(6, 0x0800, true); // flags: UTF-8 names
      local.setUint16(8, 0, true); // method: STORE
      local.setUint16(10, time, true);
      local.setUint16(12, day, true);
      local.setUint32(14, crc, true);
      local.setUint32(18, data.length, true); // compressed size
      local.setUint32(22, data.length, true); // uncompressed size
      local.setUint16(26, name.length, true);
      local.setUint16(28, 0, true); // extra field length
      parts.push(local, name, data);

      const entry = new DataView(new ArrayBuffer(46));
      entry.setUint32(0, 0x02014b50, true); // central directory header signature
      entry.setUint16(4, 0x0314, true); // made by: 2.0, Unix (so the mode below is read)
      entry.setUint16(6, 20, true);
      entry.setUint16(8, 0x0800, true);
      entry.setUint16(10, 0, true);
      entry.setUint16(12, time, true);
      entry.setUint16(14, day, true);
      entry.setUint32(16, crc, true);
      entry.setUint32(20, data.length, true);
      entry.setUint32(24, data.length, true);
      entry.setUint16(28, name.length, true);
      entry.setUint16(30, 0, true); // extra
      entry.setUint16(32, 0, true); // comment
      entry.setUint16(34, 0, true); // disk number
      entry.setUint16(36, 0, true); // internal attributes
      entry.setUint32(38, (0o100644 << 16) >>> 0, true); // external: a regular file, rw-r--r--
      entry.setUint32(42, offset, true); // where its local header is
      central.push(entry, name);
      offset += 30 + name.length + data.length;
      if (offset > 0xffffffff) throw new RangeError("too large for a zip without zip64");
    }
    let size = 0;
    for (const part of central) size += part.byteLength;
    const end = new DataView(new ArrayBuffer(22));
    end.setUint32(0, 0x06054b50, true); // end of central directory signature
    end.setUint16(4, 0, true);
    end.setUint16(6, 0, true);
    end.setUint16(8, files.length, true);
    end.setUint16(10, files.length, true);
    end.setUint32(12, size, true);
    end.setUint32(16, offset, true);
    end.setUint16(20, 0, true);
    return new Blob([...parts, ...central, end], { type: "application/zip" });
  }

  global.CleancutZip = { crc32: crc32, makeZip: makeZip };
})(typeof window !== "undefined" ? window : globalThis);
