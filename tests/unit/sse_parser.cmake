if(TARGET sse2kafka_sse)
  sse2kafka_unit_test(sse_parser_test ${CMAKE_CURRENT_LIST_DIR}/sse_parser_test.cpp)
  target_link_libraries(sse_parser_test PRIVATE sse2kafka_sse)
endif()
