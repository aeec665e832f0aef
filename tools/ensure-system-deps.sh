#!/usr/bin/env bash
# Install the system packages wsianon needs when missing and permitted (root + apt-get):
#   libturbojpeg0  - JPEG passthrough for opentile/wsidicomizer (DICOM target)
#   dicom3tools    - dciodvfy, validates DICOM outputs in the tests
#   chromium       - headless browser the report tests load wsianon-report.html in
#   poppler-utils  - pdftotext, the tests read the certificate PDF's text
#   orthanc, orthanc-dicomweb, orthanc-wsi - the DICOM store the delivery tests push to
#                    (started by the tests themselves in a loopback-only network namespace)
#   openssl        - the throw-away certificate of the TLS front in those tests
#   libvips-tools, gdal-bin, dcmtk - the real encoders the false-positive tests run (vips,
#                    gdal_translate, dcmcjpls/dcmdjpeg): their outputs must verify clean
set -u
need=()
have_pkg() { dpkg -s "$1" >/dev/null 2>&1; }
if command -v dpkg >/dev/null 2>&1; then
  have_pkg libturbojpeg0 || ldconfig -p 2>/dev/null | grep -q libturbojpeg || need+=(libturbojpeg0)
  command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v pdftotext >/dev/null 2>&1 || need+=(poppler-utils)
  for p in orthanc orthanc-dicomweb orthanc-wsi; do have_pkg $p || need+=($p); done
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  command -v vips >/dev/null 2>&1 || need+=(libvips-tools)
  command -v gdal_translate >/dev/null 2>&1 || need+=(gdal-bin)
  command -v dcmcjpls >/dev/null 2>&1 || need+=(dcmtk)
else
  ldconfig -p 2>/dev/null | grep -q libturbojpeg || need+=(libturbojpeg0)
  command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # the orthanc package would start a system-wide server listening on every interface: keep
  # services from starting during this install (the tests start their own, confined to loopback)
  norc=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && norc=1
  fi
  trap '[ -n "$norc" ] && rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1; apt-get install -y -q "${need[@]}" >/dev/null; } || {
    echo "warning: could not install ${need[*]} with apt-get; the DICOM target, dciodvfy, report (chromium, pdftotext) and encoder (vips, gdal, dcmtk) tests need them" >&2; exit 0; }
else
  echo "warning: missing system packages: ${need[*]} (install with: sudo apt-get install ${need[*]})." >&2
  echo "         The DICOM target and the native tiles-coded-tight check need libturbojpeg0, the tests use dciodvfy." >&2
fi
exit 0
