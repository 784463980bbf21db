#!/bin/sh
# xl migrate -s's transport for a migration to this same dom0: xl runs "<this> <host> xl migrate-receive ...";
# the host is ignored and the receiver runs here, with stdin/stdout as the migration stream.
shift
exec "$@"
