# The ops layer as the process sees it: log lines on stderr (text, JSON, journal prefix), the
# log rate limiter, signals through signalfd and sd_notify messages.
if(TARGET sse2kafka_ops)
  sse2kafka_unit_test(ops_test ${CMAKE_CURRENT_LIST_DIR}/ops_test.cpp)
  target_link_libraries(ops_test PRIVATE sse2kafka_ops)
endif()
