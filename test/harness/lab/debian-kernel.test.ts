// Which Debian packages a kernel comes in, read from `apt-cache show` as the archive prints it (the paragraphs below
// are trixie-backports' and bookworm's own, trimmed to the fields read).
import t from 'tap';
import { dependsOf, kernelPackages } from '../../../harness/lab/debian-kernel.js';

const LINUX_7_META = `Package: linux-image-cloud-amd64
Version: 7.3.4-1~bpo13+1
Depends: linux-base-cloud-amd64 (= 7.3.4-1~bpo13+1), linux-image-7.3.4+deb13-cloud-amd64 (= 7.3.4-1~bpo13+1), linux-modules-cloud-amd64 (= 7.3.4-1~bpo13+1)
`;
const LINUX_7_IMAGE = `Package: linux-image-7.3.4+deb13-cloud-amd64
Version: 7.3.4-1~bpo13+1
Installed-Size: 15
Depends: dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, linux-base-7.3.4+deb13-cloud-amd64 (= 7.3.4-1~bpo13+1), linux-binary-7.3.4+deb13-cloud-amd64 (= 7.3.4-1~bpo13+1), linux-modules-7.3.4+deb13-cloud-amd64 (= 7.3.4-1~bpo13+1)
Recommends: apparmor
`;
const LINUX_6_IMAGE = `Package: linux-image-6.1.0-57-cloud-amd64
Version: 6.1.176-1
Depends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
Recommends: firmware-linux-free, apparmor
`;

t.test('Depends, alternatives and versions dropped', async (t) => {
  t.same(dependsOf(LINUX_7_META), ['linux-base-cloud-amd64', 'linux-image-7.3.4+deb13-cloud-amd64', 'linux-modules-cloud-amd64']);
  t.same(dependsOf(LINUX_6_IMAGE), ['kmod', 'linux-base', 'initramfs-tools', 'linux-initramfs-tool']);
  t.same(dependsOf('Package: x\n'), [], 'no Depends: nothing');
});

t.test("a Linux 7 image is an empty package: its binary and modules packages come with it; a 6.x image holds both", async (t) => {
  t.same(kernelPackages('linux-image-7.3.4+deb13-cloud-amd64', LINUX_7_IMAGE), [
    'linux-image-7.3.4+deb13-cloud-amd64', 'linux-binary-7.3.4+deb13-cloud-amd64', 'linux-modules-7.3.4+deb13-cloud-amd64',
  ]);
  t.same(kernelPackages('linux-image-6.1.0-57-cloud-amd64', LINUX_6_IMAGE), ['linux-image-6.1.0-57-cloud-amd64']);
  t.notOk(kernelPackages('linux-image-7.3.4+deb13-cloud-amd64', LINUX_7_IMAGE).includes('linux-base-7.3.4+deb13-cloud-amd64'), 'not its maintainer scripts\' helpers');
});
