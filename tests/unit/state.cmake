# The state layer's checkpoint store, built from its own source so that the test does not depend
# on the rest of the layer.
sse2kafka_unit_test(checkpoint_store_test
  ${CMAKE_CURRENT_LIST_DIR}/checkpoint_store_test.cpp
  ${PROJECT_SOURCE_DIR}/daemon/state/checkpoint_store.cpp)
target_include_directories(checkpoint_store_test PRIVATE ${SSE2KAFKA_INCLUDE})
target_link_libraries(checkpoint_store_test PRIVATE nlohmann_json::nlohmann_json)
