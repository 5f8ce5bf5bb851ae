# Install rules for what runs sse2kafka as a service, and its Debian package.
#
#   cmake --install build                       the binary (daemon/CMakeLists.txt), the systemd
#                                               unit, the default config, the docs
#   (cd build && cpack)                         build/sse2kafka_<version>_<arch>.deb
#
# The unit goes to <prefix>/lib/systemd/system with its ExecStart pointing at <prefix>/bin, so a
# /usr/local install works too; the config always goes to /etc/sse2kafka, where the unit's
# ConfigurationDirectory= and --config look (use DESTDIR= for a staged install). The package
# installs under /usr, marks the config a conffile (local edits survive upgrades), and neither
# enables nor starts the service: the config needs KAFKA_BROKERS first (see the unit's header).
include_guard(GLOBAL)

get_filename_component(_sse2kafka_root "${CMAKE_CURRENT_LIST_DIR}" DIRECTORY)

# The unit is rewritten at install time, when the prefix is known (cpack installs with its own).
install(CODE "set(sse2kafka_unit_source \"${_sse2kafka_root}/deploy/systemd/sse2kafka.service\")
set(sse2kafka_unit_staged \"${CMAKE_BINARY_DIR}/packaging/sse2kafka.service\")")
install(CODE [[
  file(READ "${sse2kafka_unit_source}" sse2kafka_unit)
  string(REPLACE "/usr/bin/sse2kafka" "${CMAKE_INSTALL_PREFIX}/bin/sse2kafka" sse2kafka_unit "${sse2kafka_unit}")
  file(WRITE "${sse2kafka_unit_staged}" "${sse2kafka_unit}")
  file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system" TYPE FILE
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ FILES "${sse2kafka_unit_staged}")
]])

# World-readable: the service runs as a DynamicUser. Secrets belong in credentials, not here.
install(FILES "${_sse2kafka_root}/deploy/sse2kafka.yaml" DESTINATION /etc/sse2kafka
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)

set(_sse2kafka_docs "")
foreach(_doc README.md)
  if(EXISTS "${_sse2kafka_root}/${_doc}")
    list(APPEND _sse2kafka_docs "${_sse2kafka_root}/${_doc}")
  endif()
endforeach()
file(GLOB _sse2kafka_doc_pages "${_sse2kafka_root}/docs/*.md")
list(APPEND _sse2kafka_docs ${_sse2kafka_doc_pages})
if(_sse2kafka_docs)
  install(FILES ${_sse2kafka_docs} DESTINATION share/doc/sse2kafka)
endif()
file(GLOB _sse2kafka_examples "${_sse2kafka_root}/config/*.yaml")
install(FILES ${_sse2kafka_examples} "${_sse2kafka_root}/deploy/sse2kafka.yaml"
        DESTINATION share/doc/sse2kafka/examples)

# Maintainer scripts: pick up the new unit; on removal stop the service; on purge drop its state.
set(_sse2kafka_scripts "${CMAKE_BINARY_DIR}/packaging/debian")
file(WRITE "${_sse2kafka_scripts}/conffiles" "/etc/sse2kafka/sse2kafka.yaml\n")
file(WRITE "${_sse2kafka_scripts}/postinst" [[#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
fi
]])
file(WRITE "${_sse2kafka_scripts}/prerm" [[#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl stop sse2kafka.service >/dev/null 2>&1 || true
fi
]])
file(WRITE "${_sse2kafka_scripts}/postrm" [[#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
fi
if [ "$1" = purge ]; then
  rm -rf /var/lib/private/sse2kafka /var/lib/sse2kafka
fi
]])
file(CHMOD "${_sse2kafka_scripts}/postinst" "${_sse2kafka_scripts}/prerm" "${_sse2kafka_scripts}/postrm"
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
file(CHMOD "${_sse2kafka_scripts}/conffiles" FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME sse2kafka)
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_VENDOR "sse2kafka")
set(CPACK_PACKAGE_CONTACT "sse2kafka developers <sse2kafka@example.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "bridge from Server-Sent Events feeds into Kafka")
string(CONCAT CPACK_PACKAGE_DESCRIPTION
       "sse2kafka holds Server-Sent Events streams open and produces one Kafka record per event,\n"
       "checkpointing the Last-Event-ID so that a restart resumes where it stopped.\n"
       "Runs as the systemd service sse2kafka.service; configure /etc/sse2kafka/sse2kafka.yaml.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends: dpkg-shlibdeps (from dpkg-dev, part of build-essential) computes the packages of the
# libraries the binary links, with their minimum versions, so a newly linked library cannot be
# forgotten (on bookworm: libc6, libstdc++6, libgcc-s1, libcurl4, librdkafka1, libyaml-cpp0.7,
# libspdlog1.10, libfmt9, libsimdjson14, libsystemd0, libcpp-httplib0.11, libssl3).
# procps is added for the unit's ExecReload=/bin/kill, missing from minimal systems.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "procps")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "ca-certificates")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${_sse2kafka_scripts}/conffiles;${_sse2kafka_scripts}/postinst;${_sse2kafka_scripts}/prerm;${_sse2kafka_scripts}/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
