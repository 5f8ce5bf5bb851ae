if(TARGET sse2kafka_sse)
  add_executable(parser_bench ${CMAKE_CURRENT_LIST_DIR}/parser_bench.cpp)
  target_link_libraries(parser_bench PRIVATE sse2kafka_sse benchmark::benchmark)
endif()
