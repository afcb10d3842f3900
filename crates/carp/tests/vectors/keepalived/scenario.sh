#!/bin/bash
# Usage: scenario.sh NAME CONFFILE [SECONDS]
# Creates netns vrrpres-a (keepalived) and vrrpres-b (tcpdump) joined by veth va0<->vb0,
# runs keepalived in vrrpres-a, captures on vb0 in vrrpres-b, SIGTERMs keepalived, tears down.
set -u
NAME=$1; CONF=$2; SECS=${3:-6}
D=/tmp/vrrp-research/run/$NAME; mkdir -p $D; rm -f $D/*.pcap $D/*.log $D/*.pid
A=vrrpres-a; B=vrrpres-b
ip netns del $A 2>/dev/null; ip netns del $B 2>/dev/null
ip netns add $A; ip netns add $B
ip link add va0 netns $A type veth peer name vb0 netns $B
ip -n $A link set va0 address 02:00:00:00:0a:01
ip -n $B link set vb0 address 02:00:00:00:0b:01
ip -n $A link set lo up; ip -n $B link set lo up
ip -n $A addr add 192.0.2.1/24 dev va0; ip -n $B addr add 192.0.2.2/24 dev vb0
ip -n $A addr add 2001:db8:1::1/64 dev va0 nodad; ip -n $B addr add 2001:db8:1::2/64 dev vb0 nodad
ip -n $A link set va0 up; ip -n $B link set vb0 up
sleep 2   # let IPv6 link-local DAD finish
ip netns exec $B tcpdump -i vb0 -U -s 0 -w $D/capture.pcap 'ip proto 112 or ip6 proto 112 or arp or icmp6' 2>$D/tcpdump.log &
TCPD=$!
sleep 1
ip netns exec $A keepalived -n -l -D -P -f $CONF -p $D/keepalived.pid -r $D/vrrp.pid -c $D/checkers.pid >$D/keepalived.log 2>&1 &
KA=$!
sleep $SECS
ip netns exec $A ip -d link show > $D/links-a.txt 2>&1
ip netns exec $A ip addr show >> $D/links-a.txt 2>&1
ip netns exec $A nft list ruleset > $D/nft-a.txt 2>&1
for s in arp_ignore arp_filter arp_announce accept_local rp_filter send_redirects promote_secondaries; do
  for f in $(ip netns exec $A sh -c "ls -d /proc/sys/net/ipv4/conf/*/$s" 2>/dev/null); do echo "$f = $(ip netns exec $A cat $f)"; done
done > $D/sysctl-a.txt
ip netns exec $A bash -c 'for f in /proc/sys/net/ipv6/conf/*/{accept_dad,addr_gen_mode,disable_ipv6,accept_ra}; do echo "$f = $(cat $f)"; done' >> $D/sysctl-a.txt 2>&1
kill -TERM $KA
sleep 2
kill $TCPD; wait $TCPD 2>/dev/null
wait $KA 2>/dev/null
tcpdump -r $D/capture.pcap -nn -e -v -xx > $D/capture.txt 2>&1
python3 /tmp/vrrp-research/run/pcap2hex.py $D/capture.pcap > $D/frames.txt
ip netns del $A; ip netns del $B
echo done $NAME
