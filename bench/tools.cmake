# Tools of the end-to-end benchmark suite (bench/run.sh, bench/README.md). They land in
# ${CMAKE_BINARY_DIR}/bench/tools.
set(SSE2KAFKA_BENCH_TOOLS_DIR ${CMAKE_BINARY_DIR}/bench/tools)

# A fast loopback SSE server: numbered events of a given size, at full speed or paced, resuming
# after Last-Event-ID; counters and pause/resume on control paths.
add_executable(sse_source ${CMAKE_CURRENT_LIST_DIR}/tools/sse_source.cpp)
set_target_properties(sse_source PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${SSE2KAFKA_BENCH_TOOLS_DIR})

# Watermark waits, last records and end-to-end latency from Kafka's side.
add_executable(kafka_probe ${CMAKE_CURRENT_LIST_DIR}/tools/kafka_probe.cpp)
target_link_libraries(kafka_probe PRIVATE PkgConfig::RDKAFKA)
set_target_properties(kafka_probe PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${SSE2KAFKA_BENCH_TOOLS_DIR})

# A producer-only client at a fixed rate: the latency floor.
add_executable(floor_producer ${CMAKE_CURRENT_LIST_DIR}/tools/floor_producer.cpp)
target_link_libraries(floor_producer PRIVATE PkgConfig::RDKAFKA)
set_target_properties(floor_producer PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${SSE2KAFKA_BENCH_TOOLS_DIR})
