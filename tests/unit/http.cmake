# The http layer on a real loop: EventLoop timers and descriptors, and HttpClient against a
# loopback server (tests/unit/support) that each test scripts.
if(TARGET sse2kafka_http)
  sse2kafka_unit_test(event_loop_test ${CMAKE_CURRENT_LIST_DIR}/event_loop_test.cpp)
  target_include_directories(event_loop_test PRIVATE ${CMAKE_CURRENT_LIST_DIR})
  target_link_libraries(event_loop_test PRIVATE sse2kafka_http)

  find_package(ZLIB REQUIRED)
  sse2kafka_unit_test(http_client_test
    ${CMAKE_CURRENT_LIST_DIR}/http_client_test.cpp
    ${CMAKE_CURRENT_LIST_DIR}/support/loopback_http_server.cpp)
  target_include_directories(http_client_test PRIVATE ${CMAKE_CURRENT_LIST_DIR})
  target_link_libraries(http_client_test PRIVATE sse2kafka_http ZLIB::ZLIB Threads::Threads)
endif()
