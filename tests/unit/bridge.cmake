# The bridge's per-stream pipeline on a real loop and HTTP client against a loopback upstream
# (tests/unit/support), with a fake PipelineHost in place of Kafka.
if(TARGET sse2kafka_bridge)
  sse2kafka_unit_test(stream_pipeline_test
    ${CMAKE_CURRENT_LIST_DIR}/stream_pipeline_test.cpp
    ${CMAKE_CURRENT_LIST_DIR}/support/loopback_http_server.cpp)
  target_include_directories(stream_pipeline_test PRIVATE ${CMAKE_CURRENT_LIST_DIR})
  target_link_libraries(stream_pipeline_test PRIVATE sse2kafka_bridge Threads::Threads)
endif()

# kafka.security into the librdkafka properties every client of the bridge starts from.
if(TARGET sse2kafka_bridge)
  sse2kafka_unit_test(kafka_client_properties_test ${CMAKE_CURRENT_LIST_DIR}/kafka_client_properties_test.cpp)
  target_link_libraries(kafka_client_properties_test PRIVATE sse2kafka_bridge)
endif()
