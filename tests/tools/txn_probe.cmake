# A scripted transactional (or plain) producer, for tests that drive a Kafka transaction step by
# step: init/begin/produce/commit/abort/wait/exit steps, one JSON line per step.
add_executable(txn_probe ${CMAKE_CURRENT_LIST_DIR}/txn_probe.cpp)
target_link_libraries(txn_probe PRIVATE PkgConfig::RDKAFKA nlohmann_json::nlohmann_json)
