// Stands in for node-gyp-build inside the single executable. netlink@0.3.0 loads its native addon with
// require('node-gyp-build')(dir); a SEA cannot require files, so the addon travels as an SEA asset and is loaded
// from a private 0700 temporary directory with process.dlopen, then the directory is removed (the mapping stays).
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

let loaded = null;

module.exports = function loadNetlinkAddon() {
  if (loaded) return loaded;
  const sea = require('node:sea');
  if (!sea.isSea()) throw new Error('the netlink addon loader is for the single executable only');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flinch-addon-'));
  fs.chmodSync(dir, 0o700);
  const file = path.join(dir, 'netlink.node');
  try {
    fs.writeFileSync(file, Buffer.from(sea.getRawAsset('netlink.node')), { mode: 0o500 });
    const addon = { exports: {} };
    process.dlopen(addon, file);
    loaded = addon.exports;
    return loaded;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
};
