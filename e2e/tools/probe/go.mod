module wayang.local/e2e/tools/probe

go 1.24
