import { labGuestImage } from '../dist/harness/lab/guest-initramfs.js';
const image = await labGuestImage('/var/cache/flinch', (l) => console.error(l));
console.log(JSON.stringify({ vmlinuz: image.kernel.vmlinuz, initrd: image.initrd }));
