#!/usr/bin/env bash
# The golden-image build's vSphere operations as a govc script, for benchmarks/vcenter_calls.py.
#
# What a site engineer would write with govc instead of the product: the same objects and the same
# vSphere operations per step (G1 check the ISOs, upload answer media, create the VM with its three
# CD-ROMs and the build marker, power on; G2 wait for an IP, detach and delete the answer media; G4
# record host key and IP as custom attributes; G8 clone powered on with the build marker; G9 wait for
# the clone's IP, mark sysprep progress, wait for its power-off; G10 mark as template, provenance
# attributes, delete older templates of the series). The guest work in between (reading the host key,
# sysprep over SSH) is done by the benchmark over SSH, as the product does; it makes no vSphere calls.
#
# govc keeps its session on disk between commands (GOVMOMI_HOME, -persist-session=true, the default):
# the most economical way to run govc, so the comparison is against govc at its best.
#
# Usage: govc_build.sh STEP [ARG]; STEP one of g1 g2 g4 g8 g9-ip g9-mark g9-wait g10 logout.
# Environment: GOVC_URL GOVC_USERNAME GOVC_PASSWORD GOVC_TLS_CA_CERTS GOVC_DATACENTER (from the lab),
# GOVC (the govc binary), and BENCH_DS BENCH_NET BENCH_FOLDER BENCH_POOL BENCH_BASE BENCH_TEMPLATE
# BENCH_SERIES BENCH_BUILD BENCH_WIN_ISO BENCH_TOOLS_ISO (datastore-relative) BENCH_ANSWER_LOCAL
# BENCH_HOSTKEY BENCH_IP BENCH_PROFILE BENCH_FINGERPRINT BENCH_TOOLS_VERSION BENCH_KEEP.
set -euo pipefail

govc() { "${GOVC:?}" "$@"; }
base="$BENCH_FOLDER/$BENCH_BASE"
tmpl="$BENCH_FOLDER/$BENCH_TEMPLATE"
answers="winnodes/$BENCH_BASE-answers.iso"

field() { # NAME VALUE PATH: set a VirtualMachine custom attribute, defining it when missing
  govc fields.set -add -type VirtualMachine "$1" "$2" "$3"
}

usable_ip() { # VM: wait for an IPv4 that is not link-local (a booting guest reports APIPA first);
  # govc waits for *an* address, so a script polls until it is a usable one.
  local ip
  while :; do
    ip=$(govc vm.ip -v4 "$1")
    ip=${ip%%,*}
    [[ -n "$ip" && "$ip" != 169.254.* ]] && break
    sleep 1
  done
  echo "$ip"
}

case "$1" in
g1)
  govc datastore.ls -ds "$BENCH_DS" "$BENCH_WIN_ISO" >/dev/null
  govc datastore.ls -ds "$BENCH_DS" "$BENCH_TOOLS_ISO" >/dev/null
  govc datastore.upload -ds "$BENCH_DS" "$BENCH_ANSWER_LOCAL" "$answers" >/dev/null
  govc vm.create -on=false -g windows2019srvNext_64Guest -c 2 -m 4096 -version 7.0.2 \
    -disk 40GB -disk.controller pvscsi -net "$BENCH_NET" -net.adapter vmxnet3 \
    -ds "$BENCH_DS" -folder "$BENCH_FOLDER" -pool "$BENCH_POOL" \
    -iso "$BENCH_WIN_ISO" -iso-datastore "$BENCH_DS" "$BENCH_BASE"
  tools_cd=$(govc device.cdrom.add -vm "$base")
  govc device.cdrom.insert -vm "$base" -device "$tools_cd" -ds "$BENCH_DS" "$BENCH_TOOLS_ISO"
  answer_cd=$(govc device.cdrom.add -vm "$base")
  govc device.cdrom.insert -vm "$base" -device "$answer_cd" -ds "$BENCH_DS" "$answers"
  govc vm.change -vm "$base" -e "winnodes.build=$BENCH_BUILD"
  govc vm.power -on "$base" >/dev/null
  ;;
g2)
  usable_ip "$base"
  answer_cd=$(govc device.ls -vm "$base" 'cdrom-*' | awk -v f="$answers" 'index($0, f) {print $1}')
  govc device.cdrom.eject -vm "$base" -device "$answer_cd"
  govc datastore.rm -ds "$BENCH_DS" "$answers"
  ;;
g4)
  field winnodes.ssh.hostkey "$BENCH_HOSTKEY" "$base"
  field winnodes.guest.ip "$BENCH_IP" "$base"
  ;;
g8)
  govc vm.clone -vm "$base" -on=true -folder "$BENCH_FOLDER" -pool "$BENCH_POOL" \
    -ds "$BENCH_DS" "$BENCH_TEMPLATE" >/dev/null
  govc vm.change -vm "$tmpl" -e "winnodes.build=$BENCH_BUILD"
  ;;
g9-ip)
  usable_ip "$tmpl"
  ;;
g9-mark)
  field winnodes.sysprep "$2" "$tmpl"
  ;;
g9-wait)
  govc object.collect -s "$tmpl" -runtime.powerState poweredOff >/dev/null
  ;;
g10)
  govc vm.markastemplate "$tmpl"
  field winnodes.build "$BENCH_BUILD" "$tmpl"
  field winnodes.profile "$BENCH_PROFILE" "$tmpl"
  field winnodes.source "[$BENCH_DS] $BENCH_WIN_ISO" "$tmpl"
  field winnodes.ssh.fingerprint "$BENCH_FINGERPRINT" "$tmpl"
  field winnodes.tools.version "$BENCH_TOOLS_VERSION" "$tmpl"
  field winnodes.flow.run "govc-script" "$tmpl"
  # Retention: keep the newest BENCH_KEEP templates of the series (names sort by build).
  mapfile -t series < <(govc find "$BENCH_FOLDER" -type m -name "$BENCH_SERIES-*" -config.template true | sort)
  doomed=$((${#series[@]} - BENCH_KEEP))
  for ((i = 0; i < doomed; i++)); do
    [[ "${series[$i]}" == "$tmpl" ]] || govc vm.destroy "${series[$i]}"
  done
  ;;
logout)
  govc session.logout
  ;;
*)
  echo "unknown step $1" >&2
  exit 2
  ;;
esac
