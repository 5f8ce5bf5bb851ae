#!/usr/bin/env bash
# A real Apache Kafka cluster on 127.0.0.1 for tests and for people: N brokers in KRaft mode
# (each node is broker and controller; the N nodes are the controller quorum), the jars from
# Maven Central through tests/kafka/pom.xml.
#
# Usage:
#   tests/kafka/cluster.sh start  [--version 3.9|4] [--dir DIR] [--brokers N] [--auto-create true|false]
#                                 [--owner-pid PID] [--timeout SECONDS] [--release X.Y.Z]
#                                 [--security plaintext|sasl_ssl|ssl] [--bridge-topic-prefix P]
#                                 [--state-topic T] [--bridge-group-prefix G] [--bridge-txn-prefix X]
#   tests/kafka/cluster.sh stop   [--dir DIR] [--keep]
#   tests/kafka/cluster.sh status [--dir DIR]
#   tests/kafka/cluster.sh start-broker ID [--dir DIR]       (one node again, after it was stopped)
#   tests/kafka/cluster.sh stop-broker ID [--dir DIR] [--kill]  (SIGTERM, bounded; --kill: SIGKILL)
#   tests/kafka/cluster.sh classpath [--version 3.9|4]       (prints the class path; fetches it)
#   tests/kafka/cluster.sh java [--dir DIR] CLASS ARGS...    (a Kafka CLI class, e.g.
#                                 org.apache.kafka.tools.TopicCommand, on the cluster's class path;
#                                 on a secure cluster add --command-config "$(state admin_java_config)",
#                                 i.e. the admin_java_config value of DIR/cluster.env)
#   tests/kafka/cluster.sh acl [--dir DIR] ARGS...           (AclCommand as admin, --bootstrap-server
#                                 and --command-config filled in, e.g. acl --add --allow-principal
#                                 User:bridge --operation Write --topic x)
#
# start: fetches the jars (mvn; offline when ~/.m2 already has them), picks free ports, formats
#   each node's log dir, starts the nodes and waits until they really serve: metadata lists N
#   brokers, and a topic with replication factor N is created and takes a record with acks=all.
#   Then it prints one line, the bootstrap list (127.0.0.1:P1,127.0.0.1:P2,...), and exits 0.
#   A port taken between picking and binding restarts the attempt on new ports (3 attempts).
#   --release: another release of the same line than the one the pom pins (e.g. 4.0.0), to
#   compare; the pins are what the suites use.
#   --owner-pid: the cluster is stopped (and its dir removed) once that process is gone, so a
#   killed test run leaves no broker behind.
# --security (default plaintext: one PLAINTEXT listener per node, no authentication, no ACLs):
#   sasl_ssl: clients authenticate with SCRAM-SHA-512 or PLAIN over TLS (server-authenticated);
#   ssl: clients authenticate with a TLS client certificate (mutual TLS). In both, each node has
#   three listeners: EXTERNAL (the advertised one, the bootstrap list; SASL_SSL or SSL), INTERNAL
#   (SSL, between brokers) and CONTROLLER (SSL), both with mutual TLS on the broker certificate.
#   Principals: SASL user names, or the CN of a certificate (broker, admin, bridge). The
#   StandardAuthorizer denies what no ACL allows; User:broker and User:admin are super users.
#   DIR/tls (openssl, at start, 30 days, EC P-256): ca.pem/ca.key, broker.pem/broker.key (CN=broker,
#   subjectAltName IP:127.0.0.1 and DNS:127.0.0.1, not localhost: a client that connects to
#   localhost fails hostname verification), bridge.pem/bridge.key and admin.pem/admin.key (client
#   certificates, unencrypted PEM keys), broker.p12 (keystore: broker key, certificate and CA),
#   admin.p12 (admin's key and certificate, for Java clients), truststore.p12 (the CA); their
#   passwords in *.password beside them. DIR/secrets: admin.password, bridge.password (random,
#   no trailing newline; SCRAM-SHA-512 credentials and PLAIN users of the same names),
#   admin-client.properties (librdkafka properties, kcat -F) and admin-java.properties (the
#   CLIs' --command-config). The script's own checks run as admin. Once the cluster serves,
#   User:bridge gets: Topic prefixed P (default events.): Write, Describe, DescribeConfigs,
#   Create; Topic T (default _sse2kafka_state): Read, Write, Describe, DescribeConfigs, Create;
#   Group prefixed G and TransactionalId prefixed X (both default sse2kafka): Read, Describe
#   and Write, Describe; Cluster: IdempotentWrite.
# stop: SIGTERM to every node it started, SIGKILL after 30 s, then removes DIR (--keep keeps it).
# status: the security mode and one line per node (id, pid, port, running|stopped); exit 0 when
#   every node runs, 1 when some do not, 3 when there is no cluster in DIR.
# Every wait is bounded. A failure exits non-zero naming the cause and showing the tail of the
# node's log; nothing is skipped silently.
#
# Defaults: --version 4, --brokers 3, --auto-create true, --timeout 120, --security plaintext,
#   --dir ${SSE2KAFKA_KAFKA_DIR:-${TMPDIR:-/tmp}/sse2kafka-kafka}.
# DIR holds: cluster.env (the state: version, ports, pids, dirs; with security: security,
#   ca_file, admin_java_config, admin_rdkafka_config, bridge_user, bridge_password_file,
#   bridge_cert_file, bridge_key_file, admin_cert_file, admin_key_file, sasl_mechanisms),
#   classpath, and per node node-ID/{server.properties,data/,logs/server.log,stdout}.
# SSE2KAFKA_KAFKA_HEAP (default "-Xms128m -Xmx512m") and SSE2KAFKA_KAFKA_JVM_OPTS change the JVM
# options of the nodes.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
python=/usr/bin/python3

die() { echo "cluster.sh: $*" >&2; exit 1; }

# ----------------------------------------------------------------------------- options

cmd="${1:-}"
[[ -n "$cmd" ]] || { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }
shift
version=4
dir="${SSE2KAFKA_KAFKA_DIR:-${TMPDIR:-/tmp}/sse2kafka-kafka}"
brokers=3
auto_create=true
owner_pid=""
release=""
timeout=120
keep=false
kill_now=false
node_arg=""
java_args=()
security=plaintext
bridge_topic_prefix=events.
state_topic=_sse2kafka_state
bridge_group_prefix=sse2kafka
bridge_txn_prefix=sse2kafka
while (($#)); do
  case "$1" in
    --version) version="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --brokers) brokers="$2"; shift 2 ;;
    --auto-create) auto_create="$2"; shift 2 ;;
    --owner-pid) owner_pid="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    --release) release="$2"; shift 2 ;;
    --keep) keep=true; shift ;;
    --kill) kill_now=true; shift ;;
    --security) security="$2"; shift 2 ;;
    --bridge-topic-prefix) bridge_topic_prefix="$2"; shift 2 ;;
    --state-topic) state_topic="$2"; shift 2 ;;
    --bridge-group-prefix) bridge_group_prefix="$2"; shift 2 ;;
    --bridge-txn-prefix) bridge_txn_prefix="$2"; shift 2 ;;
    *)
      if [[ "$cmd" == java || "$cmd" == acl ]]; then java_args=("$@"); break; fi
      if [[ -z "$node_arg" && "$1" =~ ^[0-9]+$ ]]; then node_arg="$1"; shift; continue; fi
      die "unknown option $1 (run without arguments for usage)" ;;
  esac
done
case "$version" in
  3.9|3) profile=kafka-3.9 ;;
  4|4.*) profile=kafka-4 ;;
  *) die "--version must be 3.9 or 4, not $version" ;;
esac
[[ "$brokers" =~ ^[1-9]$ ]] || die "--brokers must be 1..9, not $brokers"
[[ "$auto_create" == true || "$auto_create" == false ]] || die "--auto-create must be true or false"
case "$security" in
  plaintext|sasl_ssl|ssl) ;;
  *) die "--security must be plaintext, sasl_ssl or ssl, not $security" ;;
esac
dir="$(mkdir -p "$dir" && cd "$dir" && pwd)"
state="$dir/cluster.env"

# ----------------------------------------------------------------------------- state file

# cluster.env is KEY=VALUE lines (shell- and Python-readable). set_state rewrites one key.
get_state() { sed -n "s/^$1=//p" "$state" 2>/dev/null | tail -n 1; }
# Nodes may be started in parallel (start_all): the rewrite holds a lock.
set_state() {
  local tmp="$state.tmp.$$"
  (
    flock -w 10 9 || die "could not lock $dir/cluster.lock"
    { grep -v "^$1=" "$state" 2>/dev/null || true; echo "$1=$2"; } >"$tmp"
    mv "$tmp" "$state"
  ) 9>"$dir/cluster.lock"
}
alive() { [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; }

# ----------------------------------------------------------------------------- jars

# The run-time class path of the profile, from ~/.m2 (fetched by mvn on first use). Offline first:
# a second start needs no network.
classpath_for() {
  local out="$1" log="$dir/mvn.log"
  local mvn=(mvn -B -q -f "$here/pom.xml" -P "$profile" dependency:build-classpath
             -Dmdep.outputFile="$out" -Dmdep.includeScope=runtime ${release:+-Dkafka.version=$release})
  command -v mvn >/dev/null || die "mvn not found: run scripts/install-deps.sh (it installs maven)"
  command -v java >/dev/null || die "java not found: run scripts/install-deps.sh (it installs a JDK 17)"
  if timeout 300 "${mvn[@]}" -o >"$log" 2>&1; then return 0; fi
  if ! timeout 600 "${mvn[@]}" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "could not fetch the Kafka $version jars with mvn (profile $profile of $here/pom.xml); log: $log"
  fi
}

# ----------------------------------------------------------------------------- nodes

node_dir() { echo "$dir/node-$1"; }

jvm_opts() {
  # Small heaps and one GC thread: three nodes share two cores with the tests. C1 only
  # (TieredStopAtLevel=1) starts the JVM faster; the broker's hot paths need no C2 for test loads.
  echo "${SSE2KAFKA_KAFKA_HEAP:--Xms128m -Xmx512m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1" \
       "-XX:-UsePerfData -Djava.awt.headless=true ${SSE2KAFKA_KAFKA_JVM_OPTS:-}"
}

# Logging: the node logs to node-ID/logs/server.log (log4j 1 for 3.9, log4j 2 for 4.x).
write_log_config() {
  local n="$1" d
  d="$(node_dir "$n")"
  cat >"$d/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$d/logs/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
EOF
  cat >"$d/log4j2.properties" <<EOF
status=warn
appender.file.type=File
appender.file.name=file
appender.file.fileName=$d/logs/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
logger.request.name=kafka.request.logger
logger.request.level=WARN
logger.clients.name=org.apache.kafka.clients
logger.clients.level=WARN
EOF
}

# The listener part of server.properties: PLAINTEXT, or (secure modes) EXTERNAL (SASL_SSL or SSL,
# advertised), INTERNAL (SSL between brokers) and CONTROLLER (SSL), with TLS, the principal
# mapping, SASL and the authorizer.
listener_properties() {
  local port="$1" cport="$2" iport="$3" tls="$dir/tls" external_protocol external_auth
  if [[ "$security" == plaintext ]]; then
    cat <<EOF
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
EOF
    return
  fi
  if [[ "$security" == sasl_ssl ]]; then external_protocol=SASL_SSL external_auth=none
  else external_protocol=SSL external_auth=required; fi
  cat <<EOF
listeners=EXTERNAL://127.0.0.1:$port,INTERNAL://127.0.0.1:$iport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=EXTERNAL://127.0.0.1:$port,INTERNAL://127.0.0.1:$iport
listener.security.protocol.map=EXTERNAL:$external_protocol,INTERNAL:SSL,CONTROLLER:SSL
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
# TLS on every listener with the broker certificate (CN=broker, IP:127.0.0.1); between brokers
# and to the controllers mutual TLS.
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls/broker.p12
ssl.keystore.password=$(cat "$tls/broker.p12.password")
ssl.truststore.type=PKCS12
ssl.truststore.location=$tls/truststore.p12
ssl.truststore.password=$(cat "$tls/truststore.password")
ssl.endpoint.identification.algorithm=https
ssl.client.auth=required
listener.name.internal.ssl.client.auth=required
listener.name.controller.ssl.client.auth=required
listener.name.external.ssl.client.auth=$external_auth
ssl.principal.mapping.rules=RULE:^CN=([a-zA-Z0-9._-]+).*\$/\$1/,DEFAULT
EOF
  if [[ "$security" == sasl_ssl ]]; then
    cat <<EOF
listener.name.external.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.external.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.external.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_admin="$(cat "$dir/secrets/admin.password")" user_bridge="$(cat "$dir/secrets/bridge.password")";
EOF
  fi
  cat <<EOF
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:broker;User:admin
EOF
}

write_server_properties() {
  local n="$1" port="$2" cport="$3" voters="$4" iport="${5:-}" d
  d="$(node_dir "$n")"
  # Secure modes: passwords inside, so only the owner reads it.
  [[ "$security" == plaintext ]] || { : >"$d/server.properties"; chmod 600 "$d/server.properties"; }
  cat >"$d/server.properties" <<EOF
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
$(listener_properties "$port" "$cport" "$iport")
log.dirs=$d/data
# The guarantees under test: every write on every broker, two of them in sync.
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
# Fewer internal partitions than the default 50: the first group or transaction of a test
# creates them, with every replica, on two cores.
offsets.topic.num.partitions=5
transaction.state.log.num.partitions=5
num.partitions=1
auto.create.topics.enable=$auto_create
group.initial.rebalance.delay.ms=0
# A killed node loses its leaderships after this long (default 9 s): fault tests wait less.
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1500
# Threads for a test machine, not for production load.
num.network.threads=2
num.io.threads=2
background.threads=2
num.replica.fetchers=1
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
# Segments small enough that tests of compaction or retention see them roll.
log.segment.bytes=16777216
EOF
}

# Starts node n in the background (its own session, so that a terminal's ^C does not reach it)
# and records its pid.
launch_node() {
  local n="$1" d cp log_opt
  d="$(node_dir "$n")"
  cp="$(cat "$dir/classpath")"
  mkdir -p "$d/logs"
  # A restart starts a fresh server.log (its start line is awaited); the earlier runs' lines
  # stay in server.log.before, for the post-mortem.
  if [[ -s "$d/logs/server.log" ]]; then cat "$d/logs/server.log" >>"$d/logs/server.log.before"; fi
  : >"$d/logs/server.log"
  # shellcheck disable=SC2046
  setsid java $(jvm_opts) -Dlog4j.configuration="file:$d/log4j.properties" \
    -Dlog4j2.configurationFile="$d/log4j2.properties" -Dkafka.logs.dir="$d/logs" \
    -cp "$cp" kafka.Kafka "$d/server.properties" </dev/null >"$d/stdout" 2>&1 &
  set_state "node_${n}_pid" "$!"
}

log_tail() {
  local n="$1" d
  d="$(node_dir "$n")"
  echo "--- node $n: last lines of $d/logs/server.log ---" >&2
  tail -n 25 "$d/logs/server.log" >&2 2>/dev/null || true
  if [[ -s "$d/stdout" ]]; then
    echo "--- node $n: last lines of $d/stdout ---" >&2
    tail -n 15 "$d/stdout" >&2
  fi
}

# Waits until node n logged that it started. Returns 0, 1 (it died or timed out: cause printed)
# or 2 (a port was taken: try again on new ports).
wait_node_started() {
  local n="$1" deadline="$2" d pid
  d="$(node_dir "$n")"
  pid="$(get_state "node_${n}_pid")"
  while :; do
    if grep -q "Kafka Server started" "$d/logs/server.log" 2>/dev/null; then return 0; fi
    if ! alive "$pid"; then
      if grep -qi "address already in use" "$d/logs/server.log" "$d/stdout" 2>/dev/null; then return 2; fi
      echo "cluster.sh: Kafka node $n (pid $pid) exited during start" >&2
      log_tail "$n"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      echo "cluster.sh: Kafka node $n did not log 'Kafka Server started' within ${timeout}s" >&2
      log_tail "$n"
      return 1
    fi
    sleep 0.2
  done
}

stop_node() {
  local n="$1" sig="$2" pid waited=0
  pid="$(get_state "node_${n}_pid")"
  alive "$pid" || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  # SIGTERM: a controlled shutdown moves leadership away first; bounded at 30 s, then SIGKILL.
  while alive "$pid" && ((waited < 300)); do sleep 0.1; waited=$((waited + 1)); done
  if alive "$pid"; then
    echo "cluster.sh: node $n (pid $pid) ignored SIG$sig for 30s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    waited=0
    while alive "$pid" && ((waited < 100)); do sleep 0.1; waited=$((waited + 1)); done
  fi
}

# ----------------------------------------------------------------------------- security

# 24 URL-safe random characters (18 bytes of base64: no padding).
random_secret() { head -c 18 /dev/urandom | base64 | tr '+/' '-_'; }

# A private file with a new random secret, no trailing newline.
write_secret() { (umask 077; random_secret | tr -d '\n' >"$1"); }

# The CA, the broker's and the clients' certificates (EC P-256, 30 days) and the Java stores, in
# DIR/tls. About a second, most of it keytool's JVM.
make_tls() {
  local tls="$dir/tls" cn ext
  rm -rf "$tls"
  (umask 077; mkdir -p "$tls")
  chmod 700 "$tls"
  (
    umask 077
    cd "$tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
      -days 30 -subj "/CN=sse2kafka test CA" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" >openssl.log 2>&1 || { cat openssl.log >&2; exit 1; }
    for cn in broker bridge admin; do
      if [[ "$cn" == broker ]]; then
        ext='subjectAltName=IP:127.0.0.1,DNS:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n'
      else
        ext='extendedKeyUsage=clientAuth\n'
      fi
      ext+='keyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n'
      { openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$cn.key" -subj "/CN=$cn" |
          openssl x509 -req -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" -days 30 \
            -extfile <(printf "$ext") -out "$cn.pem"; } >>openssl.log 2>&1 || { cat openssl.log >&2; exit 1; }
    done
    write_secret broker.p12.password
    write_secret admin.p12.password
    write_secret truststore.password
    openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker \
      -out broker.p12 -passout file:broker.p12.password >>openssl.log 2>&1 || { cat openssl.log >&2; exit 1; }
    openssl pkcs12 -export -in admin.pem -inkey admin.key -certfile ca.pem -name admin \
      -out admin.p12 -passout file:admin.p12.password >>openssl.log 2>&1 || { cat openssl.log >&2; exit 1; }
    keytool -importcert -noprompt -alias ca -file ca.pem -keystore truststore.p12 -storetype PKCS12 \
      -storepass:file truststore.password >>openssl.log 2>&1 || { cat openssl.log >&2; exit 1; }
    chmod 644 ca.pem broker.pem bridge.pem admin.pem
    rm -f openssl.log
  ) || die "could not make the TLS certificates in $tls (openssl, keytool)"
}

# The users' passwords and the admin's client configs, in DIR/secrets.
make_secrets() {
  local s="$dir/secrets" tls="$dir/tls" pw
  rm -rf "$s"
  (umask 077; mkdir -p "$s")
  chmod 700 "$s"
  write_secret "$s/admin.password"
  write_secret "$s/bridge.password"
  pw="$(cat "$s/admin.password")"
  # librdkafka before 2.6.1 (Debian's is 2.0.2) repeats the client nonce in its SCRAM
  # client-final-message; Kafka 4.x checks the nonce strictly (RFC 5802) and refuses every SCRAM
  # login of such a client (confluentinc/librdkafka#4895). Kafka 3.9 accepts it. So the admin's
  # librdkafka config (kcat, kafka_dump) uses SCRAM-SHA-512 on 3.9 and PLAIN on 4.x; the Java
  # clients (CLIs) use SCRAM-SHA-512 on both.
  local rdkafka_mechanism=SCRAM-SHA-512
  [[ "$profile" == kafka-3.9 ]] || rdkafka_mechanism=PLAIN
  (
    umask 077
    if [[ "$security" == sasl_ssl ]]; then
      cat >"$s/admin-client.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanisms=$rdkafka_mechanism
sasl.username=admin
sasl.password=$pw
ssl.ca.location=$tls/ca.pem
EOF
      cat >"$s/admin-java.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$pw";
ssl.truststore.type=PKCS12
ssl.truststore.location=$tls/truststore.p12
ssl.truststore.password=$(cat "$tls/truststore.password")
EOF
    else
      cat >"$s/admin-client.properties" <<EOF
security.protocol=SSL
ssl.certificate.location=$tls/admin.pem
ssl.key.location=$tls/admin.key
ssl.ca.location=$tls/ca.pem
EOF
      cat >"$s/admin-java.properties" <<EOF
security.protocol=SSL
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls/admin.p12
ssl.keystore.password=$(cat "$tls/admin.p12.password")
ssl.truststore.type=PKCS12
ssl.truststore.location=$tls/truststore.p12
ssl.truststore.password=$(cat "$tls/truststore.password")
EOF
    fi
  )
}

record_security_state() {
  set_state security "$security"
  [[ "$security" != plaintext ]] || return 0
  set_state ca_file "$dir/tls/ca.pem"
  set_state admin_java_config "$dir/secrets/admin-java.properties"
  set_state admin_rdkafka_config "$dir/secrets/admin-client.properties"
  set_state bridge_user bridge
  set_state bridge_password_file "$dir/secrets/bridge.password"
  set_state bridge_cert_file "$dir/tls/bridge.pem"
  set_state bridge_key_file "$dir/tls/bridge.key"
  set_state admin_cert_file "$dir/tls/admin.pem"
  set_state admin_key_file "$dir/tls/admin.key"
  if [[ "$security" == sasl_ssl ]]; then
    set_state sasl_mechanisms SCRAM-SHA-512,PLAIN
    # What works with librdkafka < 2.6.1 (see make_secrets): SCRAM-SHA-512 on 3.9, PLAIN on 4.x.
    set_state rdkafka_sasl_mechanism "$([[ "$profile" == kafka-3.9 ]] && echo SCRAM-SHA-512 || echo PLAIN)"
  else
    set_state sasl_mechanisms ""
  fi
}

# How the script's own clients authenticate (as admin): kcat's and the CLIs' extra arguments.
client_auth() {
  kcat_auth=()
  java_auth=()
  [[ "$security" != plaintext ]] || return 0
  kcat_auth=(-F "$dir/secrets/admin-client.properties")
  java_auth=(--command-config "$dir/secrets/admin-java.properties")
}

# The AclCommand class: in the tools module from 4.0 on, in core (kafka.admin) before.
acl_classes=(org.apache.kafka.tools.AclCommand kafka.admin.AclCommand)

# Runs AclCommand ARGS as admin (the first class of acl_classes that exists; remembered in
# cluster.env as acl_class). Its output goes to stdout and stderr.
run_acl() {
  local java_class out rc known
  known="$(get_state acl_class)"
  client_auth
  cli_java
  for java_class in ${known:-${acl_classes[@]}}; do
    rc=0
    out="$(timeout 120 "${cli[@]}" "$java_class" --bootstrap-server "$(bootstrap)" "${java_auth[@]}" "$@" 2>&1)" || rc=$?
    if ((rc != 0)) && [[ -z "$known" && "$out" == *"ClassNotFoundException: $java_class"* ]]; then continue; fi
    [[ -n "$known" ]] || set_state acl_class "$java_class"
    [[ -z "$out" ]] || printf '%s\n' "$out"
    return "$rc"
  done
  echo "cluster.sh: no AclCommand class (${acl_classes[*]}) in the Kafka jars" >&2
  return 1
}

# Which AclCommand class the jars hold, read from the jars (no JVM start); empty when unsure
# (run_acl then tries them in turn).
detect_acl_class() {
  "$python" - "$dir/classpath" "${acl_classes[@]}" <<'EOF' 2>/dev/null || true
import sys, zipfile
jars = [j for j in open(sys.argv[1]).read().strip().split(":") if j.endswith(".jar")]
for name in sys.argv[2:]:
    entry = name.replace(".", "/") + ".class"
    for jar in jars:
        try:
            if entry in zipfile.ZipFile(jar).namelist():
                print(name)
                sys.exit(0)
        except (OSError, zipfile.BadZipFile):
            pass
EOF
}

# The default ACLs of User:bridge. One AclCommand per resource pattern type and operation set
# (AclCommand gives every resource of a call the same operations), run in parallel.
grant_bridge_acls() {
  local p="--allow-principal" u="User:bridge" i rc=0 pids=() found
  local -a grants=(
    "--cluster --operation IdempotentWrite"
    "--topic $bridge_topic_prefix --resource-pattern-type prefixed --operation Write --operation Describe --operation DescribeConfigs --operation Create"
    "--topic $state_topic --resource-pattern-type literal --operation Read --operation Write --operation Describe --operation DescribeConfigs --operation Create"
    "--group $bridge_group_prefix --resource-pattern-type prefixed --operation Read --operation Describe"
    "--transactional-id $bridge_txn_prefix --resource-pattern-type prefixed --operation Write --operation Describe"
  )
  found="$(detect_acl_class)"
  if [[ -n "$found" ]]; then
    set_state acl_class "$found"
    i=0
  else
    # Unknown: the first call finds the class, the others use it.
    # shellcheck disable=SC2086
    run_acl --add $p $u ${grants[0]} >"$dir/acl-0.out" 2>&1 || {
      cat "$dir/acl-0.out" >&2
      echo "cluster.sh: granting the default ACLs of $u failed (AclCommand --add ${grants[0]})" >&2
      return 1
    }
    i=1
  fi
  local first=$i
  for (( ; i < ${#grants[@]}; i++)); do
    # shellcheck disable=SC2086
    run_acl --add $p $u ${grants[$i]} >"$dir/acl-$i.out" 2>&1 &
    pids+=("$!")
  done
  for ((i = first; i < ${#grants[@]}; i++)); do
    if ! wait "${pids[$((i - first))]}"; then
      cat "$dir/acl-$i.out" >&2
      echo "cluster.sh: granting the default ACLs of $u failed (AclCommand --add ${grants[$i]})" >&2
      rc=1
    fi
  done
  ((rc == 0)) && rm -f "$dir"/acl-*.out
  return "$rc"
}

# ----------------------------------------------------------------------------- readiness

bootstrap() { get_state bootstrap; }

# The number of brokers metadata lists (kcat -L).
metadata_brokers() {
  client_auth
  timeout 15 kcat "${kcat_auth[@]}" -L -b "$(bootstrap)" -m 5 -J 2>/dev/null |
    "$python" -c 'import json,sys; print(len(json.load(sys.stdin).get("brokers", [])))' 2>/dev/null || echo 0
}

# The java command line of a Kafka CLI class (StorageTool, TopicCommand, ...), as an array so that
# `timeout` can run it.
cli_java() {
  cli=(java -Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData
       -Dlog4j.configuration="file:$dir/cli-log4j.properties"
       -Dlog4j2.configurationFile="$dir/cli-log4j2.properties" -cp "$(cat "$dir/classpath")")
}

write_cli_log_config() {
  printf 'log4j.rootLogger=WARN, err\nlog4j.appender.err=org.apache.log4j.ConsoleAppender\nlog4j.appender.err.Target=System.err\nlog4j.appender.err.layout=org.apache.log4j.PatternLayout\nlog4j.appender.err.layout.ConversionPattern=%%p %%m (%%c)%%n\n' >"$dir/cli-log4j.properties"
  printf 'status=warn\nappender.err.type=Console\nappender.err.name=err\nappender.err.target=SYSTEM_ERR\nappender.err.layout.type=PatternLayout\nappender.err.layout.pattern=%%p %%m (%%c)%%n\nrootLogger.level=WARN\nrootLogger.appenderRef.err.ref=err\n' >"$dir/cli-log4j2.properties"
}

# Metadata shows every broker, a topic with RF=N is created, and a record written with acks=all
# (idempotent producer) reads back.
wait_serving() {
  local deadline="$1" seen=0 topic="_cluster_ready" out
  client_auth
  while :; do
    seen="$(metadata_brokers)"
    ((seen == brokers)) && break
    if ((SECONDS >= deadline)); then
      echo "cluster.sh: metadata lists $seen of $brokers brokers after ${timeout}s" >&2
      log_tail 1
      return 1
    fi
    sleep 0.3
  done
  if ! out="$(cli_java; timeout 120 "${cli[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "$(bootstrap)" \
                "${java_auth[@]}" --create --if-not-exists --topic "$topic" --partitions 1 --replication-factor "$rf" 2>&1)"; then
    echo "$out" >&2
    echo "cluster.sh: could not create the readiness topic $topic with replication factor $rf" >&2
    log_tail 1
    return 1
  fi
  local marker="ready-$$-$RANDOM"
  while :; do
    if echo "$marker" | timeout 30 kcat "${kcat_auth[@]}" -P -b "$(bootstrap)" -t "$topic" -X acks=all \
         -X enable.idempotence=true -X message.timeout.ms=10000 2>"$dir/ready-produce.err" &&
       timeout 30 kcat "${kcat_auth[@]}" -C -b "$(bootstrap)" -t "$topic" -o beginning -e -q 2>/dev/null | grep -qx "$marker"; then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      cat "$dir/ready-produce.err" >&2
      echo "cluster.sh: a record to $topic (RF $rf, acks=all) was not written and read back within ${timeout}s" >&2
      log_tail 1
      return 1
    fi
    sleep 0.5
  done
}

# ----------------------------------------------------------------------------- ports

# 2N (3N with security) loopback ports that are free now, held open together so that they differ.
pick_ports() {
  "$python" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

cluster_id() {
  # Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding; not starting with
  # '-' (the CLIs would read it as an option).
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
    [[ "$id" != -* ]] && { echo "$id"; return; }
  done
}

# ----------------------------------------------------------------------------- commands

do_stop() {
  [[ -f "$state" ]] || { echo "cluster.sh: no cluster in $dir" >&2; return 0; }
  local n count watcher
  count="$(get_state brokers)"
  watcher="$(get_state watcher_pid)"
  # The watcher would stop the cluster a second time.
  if alive "$watcher" && [[ "$watcher" != "$PPID" ]]; then kill "$watcher" 2>/dev/null || true; fi
  for ((n = 1; n <= count; n++)); do
    pid="$(get_state "node_${n}_pid")"
    alive "$pid" && kill -TERM "$pid" 2>/dev/null || true
  done
  for ((n = 1; n <= count; n++)); do stop_node "$n" TERM; done
  if $keep; then
    rm -f "$state"
    echo "cluster.sh: stopped; kept $dir"
  else
    rm -rf "$dir"
    echo "cluster.sh: stopped; removed $dir"
  fi
}

start_attempt() {
  local ports voters="" n port cport iport="" deadline rc per=2
  # Per node: the client port and the controller port; with security also the INTERNAL one.
  [[ "$security" == plaintext ]] || per=3
  read -r -a ports <<<"$(pick_ports $((per * brokers)))"
  for ((n = 1; n <= brokers; n++)); do
    voters+="${voters:+,}$n@127.0.0.1:${ports[$((per * n - 1))]}"
  done
  local boot=""
  local id
  id="$(cluster_id)"
  for ((n = 1; n <= brokers; n++)); do
    port="${ports[$((per * n - per))]}"
    cport="${ports[$((per * n - 1))]}"
    ((per == 2)) || iport="${ports[$((per * n - 2))]}"
    boot+="${boot:+,}127.0.0.1:$port"
    rm -rf "$(node_dir "$n")"
    mkdir -p "$(node_dir "$n")/logs"
    write_server_properties "$n" "$port" "$cport" "$voters" "$iport"
    write_log_config "$n"
    set_state "node_${n}_port" "$port"
    set_state "node_${n}_controller_port" "$cport"
    [[ -z "$iport" ]] || set_state "node_${n}_internal_port" "$iport"
    set_state "node_${n}_dir" "$(node_dir "$n")"
  done
  set_state bootstrap "$boot"
  set_state cluster_id "$id"
  # Formatting runs one JVM per node: in parallel, they take the time of one.
  local pids=() scram=()
  # sasl_ssl: the users' SCRAM credentials go into the initial metadata (the passwords are on
  # this short-lived command line only).
  if [[ "$security" == sasl_ssl ]]; then
    scram=(--add-scram "SCRAM-SHA-512=[name=admin,password=$(cat "$dir/secrets/admin.password")]"
           --add-scram "SCRAM-SHA-512=[name=bridge,password=$(cat "$dir/secrets/bridge.password")]")
  fi
  cli_java
  for ((n = 1; n <= brokers; n++)); do
    # Its output shows the SCRAM records (salted keys): owner only.
    : >"$(node_dir "$n")/format.out"
    chmod 600 "$(node_dir "$n")/format.out"
    timeout 120 "${cli[@]}" kafka.tools.StorageTool format -t "$id" -c "$(node_dir "$n")/server.properties" \
      "${scram[@]}" >"$(node_dir "$n")/format.out" 2>&1 &
    pids+=("$!")
  done
  for ((n = 1; n <= brokers; n++)); do
    if ! wait "${pids[$((n - 1))]}"; then
      cat "$(node_dir "$n")/format.out" >&2
      die "formatting node $n's log dir failed (kafka.tools.StorageTool format)"
    fi
  done
  for ((n = 1; n <= brokers; n++)); do launch_node "$n"; done
  deadline=$((SECONDS + timeout))
  for ((n = 1; n <= brokers; n++)); do
    rc=0
    wait_node_started "$n" "$deadline" || rc=$?
    ((rc == 0)) || return "$rc"
  done
  wait_serving "$deadline"
}

start_watcher() {
  # Stops the cluster once the owner is gone; polls once a second (the owner is not our child).
  local owner="$1"
  (
    trap '' INT
    while kill -0 "$owner" 2>/dev/null; do sleep 1; done
    "$0" stop --dir "$dir" >/dev/null 2>&1
  ) </dev/null >/dev/null 2>&1 &
  set_state watcher_pid "$!"
}

do_start() {
  if [[ -f "$state" ]]; then
    local n running=0
    for ((n = 1; n <= $(get_state brokers); n++)); do
      alive "$(get_state "node_${n}_pid")" && running=1
    done
    ((running == 0)) || die "a cluster is already running in $dir (cluster.sh stop --dir $dir first)"
    rm -f "$state"
  fi
  rf=$((brokers < 3 ? brokers : 3))
  min_isr=$((rf > 1 ? 2 : 1))
  local started=$SECONDS tls_pid=""
  # The certificates are made while mvn resolves the class path (both take about a second of CPU).
  if [[ "$security" != plaintext ]]; then make_tls & tls_pid=$!; fi
  classpath_for "$dir/classpath"
  if [[ -n "$tls_pid" ]]; then wait "$tls_pid" || exit 1; make_secrets; fi
  write_cli_log_config
  set_state version "$version"
  set_state profile "$profile"
  set_state kafka_version "${release:-$(sed -n "/<id>$profile<\/id>/,/<\/profile>/s:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p" "$here/pom.xml")}"
  set_state brokers "$brokers"
  set_state auto_create "$auto_create"
  set_state replication_factor "$rf"
  set_state min_insync_replicas "$min_isr"
  set_state dir "$dir"
  set_state classpath_file "$dir/classpath"
  record_security_state
  # A failed start leaves nothing running; the dir stays for the post-mortem.
  trap 'rc=$?; if ((rc != 0)); then keep=true; do_stop >/dev/null 2>&1; fi' EXIT
  local attempt rc
  for attempt in 1 2 3; do
    rc=0
    start_attempt || rc=$?
    ((rc == 0)) && break
    for ((n = 1; n <= brokers; n++)); do stop_node "$n" KILL; done
    ((rc == 2)) || die "the Kafka $version cluster did not come up (see above; dir $dir)"
    echo "cluster.sh: a port was taken between picking and binding; attempt $((attempt + 1)) on new ports" >&2
  done
  ((rc == 0)) || die "the Kafka $version cluster did not come up: ports kept being taken (3 attempts)"
  if [[ "$security" != plaintext ]]; then
    grant_bridge_acls || die "the Kafka $version cluster runs, but the default ACLs of User:bridge could not be granted"
  fi
  [[ -z "$owner_pid" ]] || start_watcher "$owner_pid"
  set_state started_seconds $((SECONDS - started))
  trap - EXIT
  echo "cluster.sh: Kafka $(get_state kafka_version), $brokers nodes, $security, up in $((SECONDS - started))s; dir $dir" >&2
  bootstrap
}

do_status() {
  [[ -f "$state" ]] || { echo "no cluster in $dir"; exit 3; }
  local n pid all=0
  echo "Kafka $(get_state kafka_version) in $dir; bootstrap $(bootstrap); security ${security}"
  for ((n = 1; n <= $(get_state brokers); n++)); do
    pid="$(get_state "node_${n}_pid")"
    if alive "$pid"; then
      echo "node $n pid $pid port $(get_state "node_${n}_port") running"
    else
      echo "node $n pid $pid port $(get_state "node_${n}_port") stopped"
      all=1
    fi
  done
  exit "$all"
}

need_cluster() { [[ -f "$state" ]] || die "no cluster in $dir (cluster.sh start --dir $dir)"; }
need_node() {
  [[ -n "$node_arg" ]] || die "$cmd needs a node id"
  ((node_arg >= 1 && node_arg <= $(get_state brokers))) || die "no node $node_arg in $dir"
}

# Every command but start acts on the cluster's mode.
if [[ "$cmd" != start && -f "$state" ]]; then security="$(get_state security)"; security="${security:-plaintext}"; fi

case "$cmd" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  classpath) mkdir -p "$dir"; classpath_for "$dir/classpath.tmp" && cat "$dir/classpath.tmp" && rm -f "$dir/classpath.tmp"; echo ;;
  start-broker)
    need_cluster; need_node
    alive "$(get_state "node_${node_arg}_pid")" && die "node $node_arg is running"
    launch_node "$node_arg"
    rc=0; wait_node_started "$node_arg" $((SECONDS + timeout)) || rc=$?
    ((rc == 0)) || die "node $node_arg did not start again"
    ;;
  stop-broker)
    need_cluster; need_node
    if $kill_now; then stop_node "$node_arg" KILL; else stop_node "$node_arg" TERM; fi ;;
  java)
    need_cluster
    ((${#java_args[@]})) || die "java needs a class name"
    cli_java; exec "${cli[@]}" "${java_args[@]}" ;;
  acl)
    need_cluster
    ((${#java_args[@]})) || die "acl needs AclCommand arguments (e.g. --list)"
    run_acl "${java_args[@]}" ;;
  *) die "unknown command $cmd (start|stop|status|start-broker|stop-broker|classpath|java|acl)" ;;
esac
