module github.com/ppml/ppml

go 1.26.8
