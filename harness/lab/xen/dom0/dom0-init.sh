#!/bin/bash
# PID 1 of the nested Xen lab's dom0 (flinch lab --hypervisor xen). No init system: it brings Xen's toolstack up by
# hand the way the Debian units would (xenstored, xen-init-dom0, xenconsoled), bridges the domU network onto dom0's
# uplink, and gives the harness a root shell on ttyS1 (lab only). The harness drives xl through that shell.
#   flinch.dom0ip=10.0.3.2/24   address of dom0 on its bridge (the domUs get theirs from the harness)
# Each dom0 disk holds one release's toolstack (4.17 from bookworm, 4.20 from trixie): its own binaries first.
XEN_BIN=$(ls -d /usr/lib/xen-4.*/bin 2>/dev/null | head -1)
export PATH=${XEN_BIN:+$XEN_BIN:}/usr/sbin:/usr/bin:/sbin:/bin
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sys /sys 2>/dev/null
ln -sf /proc/self/fd /dev/fd
say() { echo "[flinch-dom0 $(cut -d' ' -f1 /proc/uptime)] $*"; }
say "starting (kernel $(uname -r))"
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    flinch.dom0ip=*) DOM0_IP=${arg#*=} ;;
  esac
done

# /dev/vdb holds the domU kernels and images (read-only), /dev/vdc the logs the harness reads after the run.
modprobe virtio_net
mkdir -p /flinch/domu && mount -t ext4 -o ro /dev/vdb /flinch/domu || say "cannot mount the domU disk"
mount -t ext4 /dev/vdc /var/log || say "cannot mount the log disk"
mkdir -p /var/log/xen/console /var/log/flinch /run/xen /run/xenstored /run/lock /var/lib/xen
exec > >(tee -a /var/log/flinch/dom0-init.log >/dev/console) 2>&1

for m in xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs xen-netback xen-blkback bridge; do
  modprobe "$m" || say "modprobe $m failed"
done
mount -t xenfs xenfs /proc/xen
xenstored --pid-file=/run/xenstored.pid || say "xenstored failed"
xen-init-dom0 || say "xen-init-dom0 failed"
xenconsoled --pid-file=/run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console --timestamp=guest || say "xenconsoled failed"

ip link set lo up
UPLINK=$(ls /sys/class/net | grep -v -e '^lo$' -e '^xenbr' | head -1)
ip link add xenbr0 type bridge
[ -n "$UPLINK" ] && ip link set "$UPLINK" master xenbr0 && ip link set "$UPLINK" up
ip link set xenbr0 up
[ -n "$DOM0_IP" ] && ip addr add "$DOM0_IP" dev xenbr0
# The backend's view: vifN.0 appears and goes with each domid.
( ip -ts monitor link > /var/log/flinch/dom0-ip-monitor.log 2>&1 ) &
say "xen $(xl info | awk '/^xen_version/{print $3}') up; uplink ${UPLINK:-none} on xenbr0 ${DOM0_IP:-without address}"

# An sshd, where the dom0 has one (DOM0_ROOTFS installs it): flinch reaches dom0 as it reaches a user's Xen host,
# with a key the harness puts in /root/.ssh/authorized_keys through the console.
if [ -x /usr/sbin/sshd ]; then
  mkdir -p /run/sshd && chmod 0755 /run/sshd
  /usr/sbin/sshd -E /var/log/flinch/sshd.log && say "sshd up" || say "sshd failed"
fi

# Lab only: a root shell on the second serial port, which the harness reaches through QEMU's console socket.
while true; do
  stty -F /dev/ttyS1 raw -echo 2>/dev/null
  PS1= setsid bash --norc --noprofile -c 'exec bash --norc --noprofile -i </dev/ttyS1 >/dev/ttyS1 2>&1'
  sleep 1
done
