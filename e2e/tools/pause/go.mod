module wayang.local/e2e/tools/pause

go 1.24
