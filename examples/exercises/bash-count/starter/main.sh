#!/bin/bash
# Fix me: count the lines of standard input.
echo "? lines"
