# The record builder's JSON output under arbitrary event types, IDs and data.
add_executable(json_writer_fuzz
  ${CMAKE_CURRENT_LIST_DIR}/json_writer_fuzz.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/record_builder.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/json_key.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/json_text.cpp)
target_include_directories(json_writer_fuzz PRIVATE ${SSE2KAFKA_INCLUDE})
target_compile_options(json_writer_fuzz PRIVATE -fsanitize=fuzzer,address,undefined
  -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
target_link_options(json_writer_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
target_link_libraries(json_writer_fuzz PRIVATE simdjson::simdjson nlohmann_json::nlohmann_json)
