// The settings a SIGHUP cannot apply to a running bridge.
//
// A reload applies the streams, `log.level` and `log.stats_interval`. Everything a running
// process was built from stays as it started until the next start: the Kafka connection and
// producer (`kafka`), the checkpoint backend and the fleet (`state`, `delivery`,
// `transaction`, `cluster`), the admin listener (`admin.listen`: the old address keeps
// serving, so a scraper is never left without an endpoint by a typo), and the log format
// (`log.format`: log shippers parse one format per process).
#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace sse2kafka::bridge {

// Copies the restart-only settings of `running` into `next`, so that `next` is what the bridge
// really runs with after the reload, and returns the names of those that differed, in a fixed
// order ("kafka", "state", "delivery", "transaction", "cluster", "admin.listen", "log.format"),
// for one warning each. Empty when the reload changes none of them.
std::vector<std::string> KeepRestartOnlySettings(const config::Config& running, config::Config& next);

}  // namespace sse2kafka::bridge
