// Which settings a reload keeps at their running values, and that it names each one.
#include "bridge/restart_only_settings.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sse2kafka::bridge {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

config::Config Running() {
  config::Config c;
  c.kafka.brokers = "k1:9092";
  c.admin.listen = "127.0.0.1:9464";
  c.log.level = "info";
  c.log.format = "text";
  c.log.stats_interval = std::chrono::seconds(3);
  config::StreamConfig s;
  s.name = "a";
  s.url = "http://a/";
  s.topic = "t";
  c.streams.push_back(s);
  return c;
}

TEST(RestartOnlySettings, AReloadThatChangesOnlyStreamsAndLiveLogSettingsKeepsNothing) {
  const config::Config running = Running();
  config::Config next = running;
  next.log.level = "debug";
  next.log.stats_interval = std::chrono::milliseconds(0);
  next.streams[0].url = "http://b/";
  EXPECT_THAT(KeepRestartOnlySettings(running, next), IsEmpty());
  EXPECT_EQ(next.log.level, "debug");
  EXPECT_EQ(next.log.stats_interval.count(), 0);
  EXPECT_EQ(next.streams[0].url, "http://b/");
}

TEST(RestartOnlySettings, EachChangedRestartOnlySettingIsNamedAndKeptAtItsRunningValue) {
  const config::Config running = Running();
  config::Config next = running;
  next.kafka.brokers = "k2:9092";
  next.state.flush_interval = std::chrono::seconds(5);
  next.delivery = config::Delivery::kExactlyOnce;
  next.transaction.max_events = 5;
  next.cluster.group = "g";
  next.admin.listen = "127.0.0.1:9999";
  next.log.format = "json";
  next.log.stats_interval = std::chrono::seconds(1);
  EXPECT_THAT(KeepRestartOnlySettings(running, next),
              ElementsAre("kafka", "state", "delivery", "transaction", "cluster", "admin.listen", "log.format"));
  EXPECT_EQ(next.kafka, running.kafka);
  EXPECT_EQ(next.state, running.state);
  EXPECT_EQ(next.delivery, running.delivery);
  EXPECT_EQ(next.transaction, running.transaction);
  EXPECT_EQ(next.cluster, running.cluster);
  EXPECT_EQ(next.admin.listen, "127.0.0.1:9464");
  EXPECT_EQ(next.log.format, "text");
  EXPECT_EQ(next.log.stats_interval, std::chrono::seconds(1));  // applies at once
}

}  // namespace
}  // namespace sse2kafka::bridge
