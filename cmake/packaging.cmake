# The Debian package (CPack DEB). Build it from the `package` preset, which installs under
# /usr and hardens like dpkg-buildflags:
#   cmake --preset package && cmake --build build/package -j2 && cpack --config build/package/CPackConfig.cmake -B build/package
# The daemons and tools install themselves (install(TARGETS) in their CMakeLists); this file
# adds what the appliance needs around them and the maintainer scripts. See docs/install.md.
include(GNUInstallDirs)

# Every packaging decision below assumes the Debian layout.
if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  message(STATUS "packaging: CMAKE_INSTALL_PREFIX is ${CMAKE_INSTALL_PREFIX}; the .deb wants /usr "
                 "(use the `package` preset)")
endif()
set(KG_SYSTEMD_UNITDIR "/lib/systemd/system" CACHE PATH "Where systemd units are installed")
set(KG_DEB_RELEASE "1" CACHE STRING "Debian revision of the package (the part after the hyphen)")
set(KG_DEB_MAINTAINER "knockgate maintainers <maintainers@users.noreply.h-seed-e2c5f151.example>"
    CACHE STRING "Maintainer field of the .deb")
set(KG_PKG_DIR ${PROJECT_SOURCE_DIR}/packaging/deb)
set(KG_PKG_OUT ${PROJECT_BINARY_DIR}/packaging)

# Units: every unit file in etc/systemd (verdictd's and webd's arrive with their daemons).
file(GLOB KG_UNIT_FILES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/etc/systemd/*.service
     ${PROJECT_SOURCE_DIR}/etc/systemd/*.target)
list(SORT KG_UNIT_FILES)
set(KG_UNITS "")
foreach(unit_file IN LISTS KG_UNIT_FILES)
  get_filename_component(unit ${unit_file} NAME)
  string(APPEND KG_UNITS " ${unit}")
endforeach()
string(STRIP "${KG_UNITS}" KG_UNITS)
install(FILES ${KG_UNIT_FILES} DESTINATION ${KG_SYSTEMD_UNITDIR})

# Configuration: conffiles (listed in packaging/deb/conffiles).
install(FILES ${PROJECT_SOURCE_DIR}/etc/knockgate.conf DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/knockgate
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
install(FILES ${PROJECT_SOURCE_DIR}/etc/logrotate.d/knockgate
        DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/logrotate.d)

# Man pages, gzipped reproducibly (-n: no name or timestamp in the header).
find_program(KG_GZIP gzip REQUIRED)
file(GLOB KG_MAN_PAGES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/*.[158])
set(KG_MAN_GZ "")
foreach(page IN LISTS KG_MAN_PAGES)
  get_filename_component(name ${page} NAME)
  string(REGEX REPLACE ".*\\.([0-9])$" "\\1" section ${name})
  set(out ${KG_PKG_OUT}/man/${name}.gz)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${KG_PKG_OUT}/man
    COMMAND ${KG_GZIP} -9n -c ${page} > ${out}
    DEPENDS ${page} VERBATIM)
  list(APPEND KG_MAN_GZ ${out})
  install(FILES ${out} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
endforeach()

# /usr/share/doc/knockgate: copyright, changelog.Debian.gz, the user docs.
string(TIMESTAMP KG_PKG_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
set(KG_DEB_VERSION ${PROJECT_VERSION}-${KG_DEB_RELEASE})
configure_file(${KG_PKG_DIR}/changelog.in ${KG_PKG_OUT}/changelog.Debian @ONLY)
add_custom_command(OUTPUT ${KG_PKG_OUT}/changelog.Debian.gz
  COMMAND ${KG_GZIP} -9n -c ${KG_PKG_OUT}/changelog.Debian > ${KG_PKG_OUT}/changelog.Debian.gz
  DEPENDS ${KG_PKG_OUT}/changelog.Debian VERBATIM)
add_custom_target(kg_package_files ALL DEPENDS ${KG_MAN_GZ} ${KG_PKG_OUT}/changelog.Debian.gz)
set(KG_DOCDIR ${CMAKE_INSTALL_DATAROOTDIR}/doc/knockgate)
install(FILES ${KG_PKG_DIR}/copyright ${KG_PKG_OUT}/changelog.Debian.gz DESTINATION ${KG_DOCDIR})
install(FILES ${KG_PKG_DIR}/lintian-overrides DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/lintian/overrides
        RENAME knockgate)
foreach(doc README.md docs/install.md docs/deployment.md docs/migrating-from-knockd.md
            docs/knockd-compatibility.md docs/images.md docs/lab.md docs/protocol.md)
  if(EXISTS ${PROJECT_SOURCE_DIR}/${doc})
    install(FILES ${PROJECT_SOURCE_DIR}/${doc} DESTINATION ${KG_DOCDIR})
  endif()
endforeach()

# The web console's static files, once web/ has more than its README.
file(GLOB KG_WEB_FILES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/web/*)
list(FILTER KG_WEB_FILES EXCLUDE REGEX "/README\\.md$")
# (knockgate-webd's own CMakeLists installs them when it is built.)
if(KG_WEB_FILES AND NOT TARGET knockgate-webd)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/web/ DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/knockgate/web
          PATTERN README.md EXCLUDE)
endif()

# Maintainer scripts, with the unit list filled in.
foreach(script postinst prerm postrm)
  configure_file(${KG_PKG_DIR}/${script}.in ${KG_PKG_OUT}/control/${script} @ONLY
                 FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                 WORLD_READ WORLD_EXECUTE)
endforeach()
configure_file(${KG_PKG_DIR}/conffiles ${KG_PKG_OUT}/control/conffiles COPYONLY)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME knockgate)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGE_CONTACT ${KG_DEB_MAINTAINER})
set(CPACK_DEBIAN_PACKAGE_MAINTAINER ${KG_DEB_MAINTAINER})
set(CPACK_DEBIAN_PACKAGE_RELEASE ${KG_DEB_RELEASE})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# adduser for the system users; init-system-helpers for deb-systemd-helper/-invoke;
# nftables, iproute2 and conntrack are what policyd drives.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, init-system-helpers (>= 1.54), nftables, iproute2, conntrack")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "logrotate")
set(CPACK_DEBIAN_PACKAGE_CONFLICTS "")
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/knockgate/knockgate")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "knock-authenticated gateway for LAN and VM hosts")
set(CPACK_PACKAGE_DESCRIPTION
    "knockgate sits between a WAN and a LAN. Nothing behind it is reachable,\n"
    "and LAN hosts reach nothing outside, until a client knocks (knockd-compatible\n"
    "port sequences or single-packet authorization) and a door grants its address\n"
    "a profile: inbound exposures, egress allowances, firewall marks and routing\n"
    "tables.\n"
    "\n"
    "This package holds the daemons (knockgate-captured, knockgate-policyd and,\n"
    "when built, knockgate-verdictd and knockgate-webd), the admin tool\n"
    "knockgatectl, the client knockgate-knock, systemd units and the default\n"
    "appliance configuration.")
string(REPLACE ";" "" CPACK_PACKAGE_DESCRIPTION "${CPACK_PACKAGE_DESCRIPTION}")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${KG_PKG_OUT}/control/postinst ${KG_PKG_OUT}/control/prerm ${KG_PKG_OUT}/control/postrm
    ${KG_PKG_OUT}/control/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# Only what install() puts in the package; the static libraries and tests stay out.
set(CPACK_INSTALL_CMAKE_PROJECTS "${PROJECT_BINARY_DIR};${PROJECT_NAME};ALL;/")
set(CPACK_SOURCE_IGNORE_FILES "/build/;/\\.git/")
include(CPack)
