# The sink's record builder and its JSON helpers. Built from their own sources so that the tests
# do not depend on the rest of the sink library.
sse2kafka_unit_test(record_builder_test
  ${CMAKE_CURRENT_LIST_DIR}/record_builder_test.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/record_builder.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/json_key.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/json_text.cpp)
target_include_directories(record_builder_test PRIVATE ${SSE2KAFKA_INCLUDE})
target_link_libraries(record_builder_test PRIVATE simdjson::simdjson nlohmann_json::nlohmann_json)

sse2kafka_unit_test(json_text_test
  ${CMAKE_CURRENT_LIST_DIR}/json_text_test.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/json_text.cpp)
target_include_directories(json_text_test PRIVATE ${SSE2KAFKA_INCLUDE})
target_link_libraries(json_text_test PRIVATE nlohmann_json::nlohmann_json)
