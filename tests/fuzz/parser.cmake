# The parser's sources are compiled into the fuzzer itself, so that they carry the coverage
# instrumentation and sanitizers without changing how the sse2kafka_sse library is built.
file(GLOB parser_fuzz_sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/daemon/sse/*.cpp)
if(parser_fuzz_sources)
  add_executable(parser_fuzz ${CMAKE_CURRENT_LIST_DIR}/parser_fuzz.cpp ${parser_fuzz_sources})
  target_include_directories(parser_fuzz PRIVATE ${PROJECT_SOURCE_DIR}/daemon ${PROJECT_SOURCE_DIR}/tests/unit)
  target_compile_options(parser_fuzz PRIVATE -fsanitize=fuzzer,address,undefined
    -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  target_link_options(parser_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
endif()
