# Pure policy objects of the bridge and http layers (reconnect backoff, acknowledgement tracking,
# header values), built from their own sources so that the tests do not depend on the rest of
# those layers.
sse2kafka_unit_test(policies_test
  ${CMAKE_CURRENT_LIST_DIR}/backoff_policy_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ack_tracker_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/header_values_test.cpp
  ${PROJECT_SOURCE_DIR}/daemon/bridge/backoff_policy.cpp
  ${PROJECT_SOURCE_DIR}/daemon/bridge/ack_tracker.cpp
  ${PROJECT_SOURCE_DIR}/daemon/http/header_values.cpp)
target_include_directories(policies_test PRIVATE ${SSE2KAFKA_INCLUDE})
target_link_libraries(policies_test PRIVATE PkgConfig::CURL)
