// Command oauth2-client fetches an access token from fastpubsub's /oauth/token
// with golang.org/x/oauth2's client-credentials flow, the credentials sent as
// -style says (header: HTTP Basic; params: in the form body), then lists the
// topics with it and prints the answer's status and the token's scope.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

func main() {
	api := flag.String("api", "http://127.0.0.1:8000", "the server's base URL")
	id := flag.String("id", "", "the client's id")
	secret := flag.String("secret", "", "the client's secret")
	style := flag.String("style", "header", "how to send the credentials: header or params")
	flag.Parse()

	config := clientcredentials.Config{ClientID: *id, ClientSecret: *secret, TokenURL: *api + "/oauth/token"}
	switch *style {
	case "header":
		config.AuthStyle = oauth2.AuthStyleInHeader
	case "params":
		config.AuthStyle = oauth2.AuthStyleInParams
	default:
		log.Fatalf("unknown -style %q", *style)
	}
	ctx := context.Background()
	token, err := config.Token(ctx)
	if err != nil {
		log.Fatal(err)
	}
	response, err := config.Client(ctx).Get(*api + "/topics")
	if err != nil {
		log.Fatal(err)
	}
	defer response.Body.Close()
	fmt.Printf("%s %d %v\n", token.TokenType, response.StatusCode, token.Extra("scope"))
}
