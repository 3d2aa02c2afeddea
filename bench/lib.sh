# shellcheck shell=bash
# Shared by the bench scripts (after they cd to the repository root).
# field NAME: the number after "NAME": in basin-bench's JSON on stdin.
field() { grep -o "\"$1\":[0-9.]*" | cut -d: -f2; }
# median: the median of the numbers on stdin, one per line.
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
