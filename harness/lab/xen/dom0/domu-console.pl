#!/usr/bin/perl
# flinch-domu-run DOMAIN TIMEOUT_S COMMAND: runs COMMAND in the lab shell on DOMAIN's console (hvc0) and exits with its
# status, printing its output. Lab only. It talks to the console the way `xl console` does, through the pty
# xenconsoled publishes in xenstore; each command is framed by markers so the guest's other console output is skipped.
use strict;
use warnings;

my ($domain, $timeout, $command) = @ARGV;
die "usage: flinch-domu-run DOMAIN TIMEOUT_S COMMAND\n" unless defined $command && $timeout =~ /^\d+$/;
chomp(my $domid = `xl domid '$domain' 2>/dev/null` // '');
die "no running domain named $domain\n" unless $domid =~ /^\d+$/;
chomp(my $tty = `xenstore-read /local/domain/$domid/console/tty 2>/dev/null` // '');
die "domain $domain has no console pty in xenstore\n" unless $tty =~ m{^/dev/pts/\d+$};
system('stty', '-F', $tty, 'raw', '-echo') == 0 or die "stty $tty failed\n";
open(my $console, '+<', $tty) or die "cannot open $tty: $!\n";
binmode $console;

my $id = sprintf('%d_%d', $$, time);
# Markers are printed from two parts, so the guest terminal's echo of the command line never contains them whole.
syswrite($console, "printf '%s\\n' '__flinch_begin_$id''__'; $command; printf '%s %s\\n' '__flinch_end_$id''__' \"\$?\"\n");
my $buffer = '';
my $deadline = time + $timeout;
while (time < $deadline) {
  my $ready = '';
  vec($ready, fileno($console), 1) = 1;
  next unless select($ready, undef, undef, 0.2);
  my $read = sysread($console, my $chunk, 65536);
  die "console of $domain closed\n" unless $read;
  $buffer .= $chunk;
  if ($buffer =~ /__flinch_begin_${id}__\r?\n(.*?)__flinch_end_${id}__ (\d+)/s) {
    my ($output, $status) = ($1, $2);
    $output =~ s/\r//g;
    print $output;
    exit $status;
  }
}
print STDERR "$domain: no answer on its console within $timeout s\n";
exit 124;
