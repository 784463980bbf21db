#!/bin/busybox sh
# PID 1 of the flinch lab guest (initramfs). It brings up the NIC from the kernel command line and runs the agent,
# restarting it if it dies: a lab run must keep reporting even if the agent has a bad moment.
#   flinch.ip=10.0.3.10/24 flinch.gw=10.0.3.1 flinch.collector=ws://10.0.3.1:7431 flinch.id=lab-guest
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
mkdir -p /dev/pts /tmp /run /var/lib/flinch
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
say() { echo "[flinch-init $(cut -d' ' -f1 /proc/uptime)] $*" > /dev/console; }

for arg in $(cat /proc/cmdline); do
  case "$arg" in
    flinch.ip=*) GUEST_IP=${arg#*=} ;;
    flinch.gw=*) GUEST_GW=${arg#*=} ;;
    flinch.collector=*) COLLECTOR=${arg#*=} ;;
    flinch.id=*) AGENT_ID=${arg#*=} ;;
    flinch.probes=*) PROBES="--probes ${arg#*=}" ;;
    flinch.remediate=*) REMEDIATE="--remediate ${arg#*=}" ;;
    # Lab only: the agent's signing key rides on the command line, which any guest user can read. A real guest gets
    # its key from provisioning into a 0600 file.
    flinch.token=*) TOKEN=${arg#*=} ;;
    flinch.echo=*) ECHO="--udp-echo ${arg#*=}" ;;
    flinch.timing-noise=*) NOISE="--timing-noise ${arg#*=}" ;;
    flinch.ntp=*) NTP_SERVER=${arg#*=} ;;
    # An unmodified guest, measured from outside only (flinch lab --agentless): everything but the agent runs.
    flinch.agent=off) NO_AGENT=1 ;;
    # Where the lab shell listens: ttyS1 under QEMU; a Xen domU has only its console, hvc0, reached from dom0.
    flinch.console=*) LAB_CONSOLE=/dev/${arg#*=} ;;
  esac
done

# Modules in dependency order, computed on the host at image build time (the image has no modprobe database).
while read -r module; do
  [ -n "$module" ] && insmod "$module" 2>/dev/null
done < /etc/flinch/modules.order

hostname "${AGENT_ID:-flinch-guest}"
ip link set lo up
IFACE=$(ls /sys/class/net | grep -v '^lo$' | head -1)
if [ -n "$IFACE" ]; then
  ip link set "$IFACE" up
  [ -n "$GUEST_IP" ] && ip addr add "$GUEST_IP" dev "$IFACE"
  [ -n "$GUEST_GW" ] && ip route add default via "$GUEST_GW"
  say "network: $IFACE ${GUEST_IP:-no address}"
else
  say "no network interface found"
fi

# The guest's own firewall, loaded before the agent starts so that it is part of the baseline.
if command -v nft >/dev/null 2>&1 && [ -f /etc/flinch-lab/firewall.nft ]; then
  nft -f /etc/flinch-lab/firewall.nft && say "firewall: /etc/flinch-lab/firewall.nft loaded"
fi

# A time daemon, when the lab asks for one (flinch lab --guest-time-daemon chronyd): then the safety net asks it to
# step instead of stepping the clock itself. Debian's makestep: only the first three updates may step.
if [ -n "$NTP_SERVER" ] && command -v chronyd >/dev/null 2>&1; then
  # chronyd opens its command socket (the only way chronyc may ask for makestep) only in a directory no one else can
  # write to: 0750, as Debian's unit makes it.
  mkdir -p /etc/chrony /var/lib/chrony && mkdir -p -m 0750 /run/chrony
  printf 'server %s iburst minpoll 0 maxpoll 0\nmakestep 1 3\n' "$NTP_SERVER" > /etc/chrony/chrony.conf
  chronyd -u root -f /etc/chrony/chrony.conf && say "chronyd: time from $NTP_SERVER"
fi

TOKEN_OPTION=
if [ -n "$TOKEN" ]; then
  (umask 077; echo "$TOKEN" > /run/flinch-token)
  TOKEN_OPTION="--token-file /run/flinch-token"
fi

# Lab only: a root shell on the second serial port (or the console named by flinch.console), which the harness reaches
# through QEMU's console socket or dom0's console pty to inject guest-side faults (firewall flush, clock step). The
# agent itself accepts no commands.
LAB_CONSOLE=${LAB_CONSOLE:-/dev/ttyS1}
if [ -e "$LAB_CONSOLE" ]; then
  (
    while true; do
      stty -F "$LAB_CONSOLE" -echo 2>/dev/null
      PS1= setsid sh -c "exec sh -i <$LAB_CONSOLE >$LAB_CONSOLE 2>&1"
      sleep 1
    done
  ) &
fi

if [ -n "$NO_AGENT" ]; then
  say "no agent (flinch.agent=off)"
  while true; do sleep 3600; done
fi

say "starting agent"
while true; do
  /usr/bin/flinch-agent run --collector "${COLLECTOR:-ws://10.0.3.1:7431}" --agent-id "${AGENT_ID:-flinch-guest}" $TOKEN_OPTION --accept-announce $ECHO $NOISE $PROBES $REMEDIATE --state-dir /var/lib/flinch > /dev/console 2>&1
  say "agent exited with status $?; restarting in 1 s"
  sleep 1
done
