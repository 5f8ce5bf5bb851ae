"""Fleet (issue 8): a SIGHUP that lands while an instance is handing partitions over.

Instance A runs alone and owns both state partitions. The broker answers slowly (rtt 2.5 s), so
every stream has events in flight. Instance B joins; A's cooperative revoke closes the streams of
the partition that moves, and they drain behind the slow broker. A SIGHUP changes every stream's
settings in that window. The streams that are leaving must not restart on A: a restart would
hold the revoke open (A would not release the partition for the rebalance timeout, then be
thrown out) and, once dropped, would run the stream on both instances. Expected:
- A logs "partitions released" for the moving partition, and never "restarting with its new
  settings" for a stream of it;
- B then connects those streams; at the end each stream has exactly one open connection, from
  its partition's owner, and the streams A kept restart there with the new settings.
"""
# ctest-timeout: 240

import signal

from fleet_support import TaggedFeeds, fleet_config, log_records, owned_partitions, state_partition
from harness import wait_until, write_config
from reliability_support import seconds

PARTITIONS = 2
GROUP = "fleet-reload"
RTT_MS = 2500


def test_reload_during_a_handoff_does_not_restart_the_leaving_streams(make_broker, upstream, tmp_path,
                                                                      start_bridge):
    topic, state_topic = "rel.fleet.reload", "_fleet_state_reload"
    broker = make_broker(topics=[topic + ":1"])
    broker.create_topic(state_topic, PARTITIONS)
    names = ["reload-%02d" % i for i in range(8)]
    partition_of = {n: state_partition(n, PARTITIONS) for n in names}
    assert set(partition_of.values()) == {0, 1}, partition_of
    paths = {n: "/" + n for n in names}
    feeds = TaggedFeeds(upstream, paths.values(), 50.0)

    def write(version):
        config = fleet_config(broker.bootstrap,
                              [{"name": n, "url": upstream.url(paths[n]), "topic": topic} for n in names],
                              partitions=PARTITIONS, topic=state_topic, group=GROUP, session_timeout="10s",
                              defaults={"headers": {"X-Instance": "${INSTANCE}", "X-Version": version}})
        return write_config(tmp_path, config, name="fleet.yaml")

    path = write("1")
    a = start_bridge(path, env={"INSTANCE": "a"})
    wait_until(lambda: a.assert_running() or owned_partitions(a) == {0, 1}, seconds(40), interval=0.2,
               message=lambda: "instance a did not get both partitions\n" + a.describe(40))
    wait_until(lambda: all(upstream.open_connections(p) == 1 for p in paths.values()), seconds(20),
               message=lambda: "instance a did not connect every stream\n" + a.describe(40))

    broker.rtt(1, RTT_MS)
    b = start_bridge(path, env={"INSTANCE": "b"})
    revoked = wait_until(lambda: a.assert_running() or log_records(a, "partitions revoked"), seconds(60),
                         interval=0.1, message=lambda: "no revoke on instance a\n" + a.describe(40))
    moving = int(revoked[0].fields["partitions"])
    leaving = [n for n in names if partition_of[n] == moving]
    staying = [n for n in names if partition_of[n] != moving]
    assert not log_records(a, "partitions released"), \
        "the revoked streams drained at once; nothing was in flight\n" + a.describe(40)

    path = write("2")
    a.signal(signal.SIGHUP)
    wait_until(lambda: a.assert_running() or log_records(a, "config reloaded"), seconds(10),
               message=lambda: "instance a did not reload\n" + a.describe(40))
    broker.rtt(1, 0)

    wait_until(lambda: a.assert_running() or log_records(a, "partitions released"), seconds(30), interval=0.1,
               message=lambda: "instance a never released the revoked partition\n" + a.describe(60))
    wait_until(lambda: b.assert_running() or moving in owned_partitions(b), seconds(60), interval=0.2,
               message=lambda: "instance b never got partition %d\n%s" % (moving, b.describe(40)))

    def settled():
        a.assert_running()
        b.assert_running()
        open_by_path = feeds.open_by_path()
        return all(len(open_by_path[paths[n]]) == 1 and open_by_path[paths[n]][0][1] == "b" for n in leaving) and \
            all(len(open_by_path[paths[n]]) == 1 and open_by_path[paths[n]][0][1] == "a" for n in staying)
    wait_until(settled, seconds(40), interval=0.2, message=lambda: "streams not settled: %s\n%s\n%s" % (
        feeds.open_by_path(), a.describe(40), b.describe(40)))

    restarted_on_a = [r.stream for r in log_records(a, "restarting with its new settings")]
    assert not set(restarted_on_a) & set(leaving), \
        "instance a restarted streams of the partition it was giving up: %s\n%s" % (restarted_on_a, a.describe(80))
    for n in staying:
        newest = [r for r in upstream.requests(paths[n]) if r.headers.get("X-Instance") == "a"][-1]
        assert newest.headers.get("X-Version") == "2", "%s kept its old settings on a" % n
    assert a.stop() == 0, a.describe()
    assert b.stop() == 0, b.describe()
