"""A rolling restart of the whole cluster under load: each of the three brokers in turn is
stopped with SIGTERM (a controlled shutdown: its leaderships move first), started again, and the
next one waits until it is back in every partition's ISR. One Kafka version (single_version():
4 unless SSE2KAFKA_KAFKA_VERSIONS leaves it out), on a cluster of this module's own.

Four numbered feeds at a steady 500 events/s each write to one topic with three partitions, all
led by broker 1 at the start, with the daemon's producer defaults (idempotent, acks=all,
message.timeout.ms=0) and kafka.max_in_flight_events 10,000; at least 3,000 records must land
between two restarts. Then the feeds end and every event must arrive: gaps 0, first copies in
stream order, nothing unexpected, the checkpoints at the last IDs after a SIGTERM stop, the
bridge never restarted. Duplicates are counted and reported. Per broker the summary gives how
long its stop and its start took and the longest stretch without a delivery.
"""
# ctest-timeout: 600
# ctest-run-serial

import time

import pytest

from broker_faults import (LoadRun, create_topic_one_leader, feeds, longest_delivery_stall,  # noqa: F401
                           partition_isrs, partition_leaders)
from kafka_cluster import running_cluster, single_version
from reliability_support import fault_text, read_checkpoints, seconds, summary_line

STREAMS = 4
RATE = 500                   # events/s per stream
PAYLOAD = 100
BETWEEN_RESTARTS = 3_000
TOPIC = "rolling.events"


@pytest.fixture(scope="module", params=[single_version()], ids=lambda v: "kafka-" + v)
def cluster(request):
    yield from running_cluster(request.param)


def test_rolling_restart_of_every_broker_under_load(healthy_cluster, feeds, processes, tmp_path,  # noqa: F811
                                                    state_dir, start_bridge):
    cluster = healthy_cluster
    create_topic_one_leader(cluster, TOPIC, partitions=3, leader=1)
    assert cluster.describe_topic_configs(TOPIC)["min.insync.replicas"] == "2"
    names = ["roll%d" % i for i in range(STREAMS)]
    run = LoadRun(cluster, TOPIC, names, feeds, RATE, processes, tmp_path, state_dir, start_bridge,
                  payload_size=PAYLOAD)
    steps = []
    try:
        run.feed.wait_connected(seconds(20))
        run.wait_read(BETWEEN_RESTARTS, seconds(60), "before the rolling restart")
        for broker in cluster.broker_ids:
            read_before = run.tail.checker.records
            leaders = partition_leaders(cluster, TOPIC)
            began = run.timeline.mark("SIGTERM broker %d (leaders %s)" % (broker, leaders))
            cluster.stop_broker(broker)
            stopped = run.timeline.mark("broker %d stopped, leaders %s" % (broker, partition_leaders(cluster, TOPIC)))
            cluster.start_broker(broker)
            started = run.timeline.mark("broker %d started" % broker)
            cluster.wait_in_sync(TOPIC)
            in_sync = run.timeline.mark("broker %d back in the ISR %s" % (broker, partition_isrs(cluster, TOPIC)))
            run.bridge.assert_running()
            run.wait_read(max(run.tail.checker.records, read_before) + BETWEEN_RESTARTS, seconds(60),
                          "after restarting broker %d" % broker)
            flowing = run.timeline.mark("%d more records read" % BETWEEN_RESTARTS)
            stall, _ = longest_delivery_stall(run.sampler.samples, began, flowing)
            steps.append({"broker": broker, "stop_s": round(stopped - began, 1), "start_s": round(started - stopped, 1),
                          "in_sync_s": round(in_sync - began, 1), "delivery_stall_s": round(stall, 1)})
        began_end = time.monotonic()
        run.finish(at_least=0, timeout=seconds(120))
        drain_s = time.monotonic() - began_end
        checkpoints = read_checkpoints(state_dir)
    finally:
        run.close()

    report = run.tail.checker.report(run.expected)
    metrics = run.last_metrics()
    line = summary_line("rolling_restart kafka=%s" % cluster.kafka_version, report, run.memory.peak_kib, extra=(
        "steps=%s end_drain_s=%.1f fatal_producer_resets=%s delivery_errors=%s %s timeline=[%s]" % (
            steps, drain_s, metrics.get("sse2kafka_fatal_producer_resets_total"),
            metrics.get("sse2kafka_stream_delivery_errors_total"), fault_text([run.bridge]), run.timeline.text())))
    print("REALKAFKA " + line)
    assert len(steps) == 3
    assert report.complete(), "the reader missed records: %s" % report.text()
    assert report.gaps == 0, "DATA LOSS in a rolling restart on Kafka %s\n%s\n%s\n%s" % (
        cluster.kafka_version, report.text(), line, run.bridge.describe(150))
    assert report.order_violations == 0, "records out of stream order\n%s\n%s" % (report.text(), line)
    assert report.unexpected == 0, report.text()
    assert checkpoints == {n: str(e.last) for n, e in run.expected.items()}, (checkpoints, run.expected)
