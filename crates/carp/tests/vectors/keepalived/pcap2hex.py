#!/usr/bin/env python3
# Convert a pcap (linktype EN10MB or LINUX_SLL2) into one line per packet:
#   <frame#> <src_mac> <dst_mac> <ethertype> <ip-packet-hex>
import struct, sys
data = open(sys.argv[1], 'rb').read()
magic = struct.unpack('<I', data[:4])[0]
end = '<' if magic in (0xa1b2c3d4, 0xa1b23c4d) else '>'
linktype = struct.unpack(end + 'I', data[20:24])[0]
off, n = 24, 0
while off + 16 <= len(data):
    ts, tu, incl, orig = struct.unpack(end + 'IIII', data[off:off+16]); off += 16
    pkt = data[off:off+incl]; off += incl; n += 1
    if linktype == 1:
        dst, src, et = pkt[0:6], pkt[6:12], pkt[12:14]; ip = pkt[14:]
    else:
        sys.exit('unsupported linktype %d' % linktype)
    mac = lambda b: ':'.join('%02x' % x for x in b)
    print(n, '%d.%06d' % (ts, tu), 'src=' + mac(src), 'dst=' + mac(dst), 'type=' + et.hex(), ip.hex())
