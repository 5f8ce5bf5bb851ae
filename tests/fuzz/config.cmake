# libFuzzer target for the config loader: any text must give a Config or errors, never a
# crash, a hang or a leak. Built from the layer's sources so that they are instrumented.
file(GLOB config_fuzz_sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/daemon/config/*.cpp)
add_executable(config_fuzz ${CMAKE_CURRENT_LIST_DIR}/config_fuzz.cpp ${config_fuzz_sources})
target_include_directories(config_fuzz PRIVATE ${SSE2KAFKA_INCLUDE})
target_compile_options(config_fuzz PRIVATE -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer)
target_link_options(config_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
target_link_libraries(config_fuzz PRIVATE yaml-cpp fmt::fmt)
