# The bridge's fleet pieces: at-least-once checkpoint records in the state topic (pure logic)
# and the exactly-once partition transaction on a real loop against librdkafka's in-process mock
# cluster (EmbeddedCluster).
if(TARGET sse2kafka_bridge)
  sse2kafka_unit_test(state_topic_checkpoints_test ${CMAKE_CURRENT_LIST_DIR}/state_topic_checkpoints_test.cpp)
  target_link_libraries(state_topic_checkpoints_test PRIVATE sse2kafka_bridge)

  sse2kafka_unit_test(partition_transaction_test ${CMAKE_CURRENT_LIST_DIR}/partition_transaction_test.cpp)
  target_include_directories(partition_transaction_test PRIVATE ${CMAKE_CURRENT_LIST_DIR})
  target_link_libraries(partition_transaction_test PRIVATE sse2kafka_bridge sse2kafka_sink sse2kafka_http
                        PkgConfig::RDKAFKA Threads::Threads)
endif()
