# Registers every test_*.py file of the calling folder as one ctest test named <label>.<file>,
# run with Debian's pytest against the real sse2kafka binary and the test tools.
# A file may set its ctest timeout (seconds) with a line "# ctest-timeout: N"; the default is 300.
# A file with a line "# ctest-run-serial" runs alone: scripts/test.sh runs these suites several at
# a time (they mostly wait on paced upstreams and broker round trips), and a scenario that loads
# both cores itself (hundreds of streams, several instances) would slow the others past their
# deadlines.
# A file with a line "# ctest-secured: MODE VERSION [PYTEST ARGS...]" is registered a second time
# as <label>.<file>.secured: its `cluster` is a secured one (cluster.sh --security MODE) of that
# one Kafka version, and the pytest args (e.g. -k EXPR) choose what runs there.
# ctest builds nothing: sse2kafka and the tools (tests/tools) are part of `all`.
set(SSE2KAFKA_PYTHON /usr/bin/python3 CACHE FILEPATH
    "Python with pytest for the e2e and reliability tests (Debian's, not a pyenv one without pytest)")

function(sse2kafka_pytest_suite label)
  if(TARGET sse2kafka)
    set(bridge $<TARGET_FILE:sse2kafka>)
  else()
    set(bridge ${CMAKE_BINARY_DIR}/sse2kafka)
  endif()
  file(GLOB test_files CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/test_*.py)
  foreach(test_file ${test_files})
    get_filename_component(test_name ${test_file} NAME_WE)
    set(timeout 300)
    file(STRINGS ${test_file} timeout_line REGEX "^# ctest-timeout: [0-9]+" LIMIT_COUNT 1)
    if(timeout_line)
      string(REGEX REPLACE "^# ctest-timeout: ([0-9]+).*" "\\1" timeout "${timeout_line}")
    endif()
    file(STRINGS ${test_file} serial_line REGEX "^# ctest-run-serial" LIMIT_COUNT 1)
    add_test(NAME ${label}.${test_name}
             COMMAND ${SSE2KAFKA_PYTHON} -m pytest -q -x -p no:cacheprovider -rA ${test_file}
             WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
    set_tests_properties(${label}.${test_name} PROPERTIES
      LABELS ${label}
      TIMEOUT ${timeout}
      ENVIRONMENT "SSE2KAFKA_BIN=${bridge};SSE2KAFKA_TOOLS_DIR=${CMAKE_BINARY_DIR}/tests/tools;PYTHONDONTWRITEBYTECODE=1")
    if(serial_line)
      set_tests_properties(${label}.${test_name} PROPERTIES RUN_SERIAL TRUE)
    endif()
    file(STRINGS ${test_file} secured_line REGEX "^# ctest-secured: " LIMIT_COUNT 1)
    if(secured_line)
      string(REGEX REPLACE "^# ctest-secured: +" "" secured_args "${secured_line}")
      separate_arguments(secured_args UNIX_COMMAND "${secured_args}")
      list(POP_FRONT secured_args security version)
      add_test(NAME ${label}.${test_name}.secured
               COMMAND ${SSE2KAFKA_PYTHON} -m pytest -q -x -p no:cacheprovider -rA ${test_file} ${secured_args}
               WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
      set_tests_properties(${label}.${test_name}.secured PROPERTIES
        LABELS ${label}
        TIMEOUT ${timeout}
        ENVIRONMENT "SSE2KAFKA_BIN=${bridge};SSE2KAFKA_TOOLS_DIR=${CMAKE_BINARY_DIR}/tests/tools;PYTHONDONTWRITEBYTECODE=1;SSE2KAFKA_KAFKA_SECURITY=${security};SSE2KAFKA_KAFKA_VERSIONS=${version}")
    endif()
  endforeach()
endfunction()
