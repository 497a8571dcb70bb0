#!/usr/bin/env python3
# Turn a text file into a C array so the daemon carries its own copy of the
# Blender worker script and never depends on an installed data file.
import sys
src, dst, name = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(src, 'rb').read()
with open(dst, 'w') as f:
    f.write('/* generated from %s; do not edit */\n#include <stddef.h>\n' % src.split('/')[-1])
    f.write('const unsigned char %s[] = {\n' % name)
    for i in range(0, len(data), 16):
        f.write('\t' + ', '.join('0x%02x' % b for b in data[i:i + 16]) + ',\n')
    f.write('};\nconst size_t %s_len = %d;\n' % (name, len(data)))
