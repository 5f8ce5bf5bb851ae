# Pure policy objects of the bridge and http layers (reconnect backoff, acknowledgement tracking,
# the settings a reload keeps, header values, URL redaction), built from their own sources so that the tests do not depend on the rest of
# those layers.
sse2kafka_unit_test(policies_test
  ${CMAKE_CURRENT_LIST_DIR}/backoff_policy_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ack_tracker_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/header_values_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/restart_only_settings_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/url_redaction_test.cpp
  ${PROJECT_SOURCE_DIR}/daemon/bridge/backoff_policy.cpp
  ${PROJECT_SOURCE_DIR}/daemon/bridge/restart_only_settings.cpp
  ${PROJECT_SOURCE_DIR}/daemon/bridge/ack_tracker.cpp
  ${PROJECT_SOURCE_DIR}/daemon/http/header_values.cpp
  ${PROJECT_SOURCE_DIR}/daemon/http/url_redaction.cpp)
target_include_directories(policies_test PRIVATE ${SSE2KAFKA_INCLUDE})
target_link_libraries(policies_test PRIVATE PkgConfig::CURL)
