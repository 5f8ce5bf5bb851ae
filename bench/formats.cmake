# Cost per event of each record format and of a json: key, for small and larger JSON events.
# Built from the record builder's own sources so that it does not depend on the rest of the sink.
add_executable(formats_bench
  ${CMAKE_CURRENT_LIST_DIR}/formats_bench.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/record_builder.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/json_key.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/json_text.cpp)
target_include_directories(formats_bench PRIVATE ${SSE2KAFKA_INCLUDE})
target_link_libraries(formats_bench PRIVATE simdjson::simdjson benchmark::benchmark)
