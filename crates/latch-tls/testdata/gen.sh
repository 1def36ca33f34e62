#!/bin/sh
# Regenerates the key and certificate fixtures the unit tests read: keys in the two PEM forms
# rcgen does not write (SEC1 "EC PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY") and an encrypted
# PKCS#8 key. Test material only: these keys protect nothing.
set -eu
cd "$(dirname "$0")"
days=36500

openssl ecparam -name prime256v1 -genkey -noout -out ec-sec1.key
openssl req -x509 -new -key ec-sec1.key -subj /CN=ec.example -days $days \
    -addext subjectAltName=DNS:ec.example -out ec-sec1.crt

openssl genrsa -traditional -out rsa-pkcs1.key 2048
openssl req -x509 -new -key rsa-pkcs1.key -subj /CN=rsa.example -days $days \
    -addext subjectAltName=DNS:rsa.example -out rsa-pkcs1.crt

openssl pkcs8 -topk8 -in ec-sec1.key -v2 aes-256-cbc -passout pass:test -out ec-encrypted.key
