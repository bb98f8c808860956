# The Debian package: `cpack -G DEB --config <build>/CPackConfig.cmake` makes
# ctquota_<version>_<arch>.deb from the install rules:
#   /usr/sbin/ctquotad, /usr/share/ctquota/{schema,web,policies},
#   /etc/ctquota/ctquotad.toml (a conffile, root:ctquota 0640 via
#   dpkg-statoverride), /etc/ctquota/policies/ (the plans in force: empty),
#   /lib/systemd/system/ctquotad.service (hardened; not enabled: the database
#   URL comes first), ctquotad(8), /usr/share/doc/ctquota/.
# postinst creates the system user ctquota; purge removes everything but that
# user (Debian policy). Dependencies come from dpkg-shlibdeps. The binary finds
# its data under /usr/share/ctquota because it runs from /usr/sbin
# (daemon/app/install_paths.hpp). Tested by tests/package/test_package.py.

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME ctquota)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "per-subscriber traffic accounting and quota enforcement from conntrack")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "ctquotad reads the kernel's connection tracking on an ISP gateway, attributes\n\
traffic to subscribers by their pre-NAT addresses, keeps exact per-subscriber\n\
totals in PostgreSQL, and enforces plans (throttles, blocks, kernel quotas)\n\
with nftables and tc HTB. It serves a REST API, a web admin page and signed\n\
webhooks.")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "ctquota maintainers <ctquota@example.org>")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "nftables, iproute2, conntrack")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "postgresql")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${CMAKE_CURRENT_LIST_DIR}/debian/conffiles;${CMAKE_CURRENT_LIST_DIR}/debian/postinst;${CMAKE_CURRENT_LIST_DIR}/debian/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)

# Files only the package carries (a plain `cmake --install` gets them too).
install(FILES ${CMAKE_CURRENT_LIST_DIR}/ctquotad.toml DESTINATION /etc/ctquota)
install(DIRECTORY DESTINATION /etc/ctquota/policies)
install(FILES ${CMAKE_CURRENT_LIST_DIR}/ctquotad.service DESTINATION /lib/systemd/system)

set(pkgdoc ${CMAKE_BINARY_DIR}/package-doc)
configure_file(${CMAKE_CURRENT_LIST_DIR}/debian/changelog.in ${pkgdoc}/changelog @ONLY)
add_custom_command(
  OUTPUT ${pkgdoc}/changelog.gz ${pkgdoc}/ctquotad.8.gz
  COMMAND gzip -9nc ${pkgdoc}/changelog > ${pkgdoc}/changelog.gz
  COMMAND gzip -9nc ${CMAKE_CURRENT_LIST_DIR}/ctquotad.8 > ${pkgdoc}/ctquotad.8.gz
  DEPENDS ${pkgdoc}/changelog ${CMAKE_CURRENT_LIST_DIR}/ctquotad.8
  COMMENT "Compressing the man page and the changelog")
add_custom_target(package_docs ALL DEPENDS ${pkgdoc}/changelog.gz ${pkgdoc}/ctquotad.8.gz)
install(FILES ${pkgdoc}/ctquotad.8.gz DESTINATION share/man/man8)
install(FILES ${pkgdoc}/changelog.gz ${CMAKE_CURRENT_LIST_DIR}/debian/copyright
              ${PROJECT_SOURCE_DIR}/README.md
        DESTINATION share/doc/ctquota)

include(CPack)
