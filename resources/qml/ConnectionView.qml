pragma ComponentBehavior: Bound
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import Veraltheim

Item {
    id: view
    required property Connection connection
    required property SettingsController settings
    objectName: "connectionView"

    RowLayout {
        anchors.fill: parent
        anchors.margins: 10
        spacing: 12

        ColumnLayout {
            Layout.preferredWidth: 480
            Layout.fillHeight: true
            spacing: 8

            GroupBox {
                title: "Service"
                Layout.fillWidth: true
                GridLayout {
                    anchors.fill: parent
                    columns: 2
                    columnSpacing: 10
                    Label { text: "Address" }
                    TextField {
                        id: address
                        objectName: "connectionAddress"
                        Accessible.name: "Service address"
                        Layout.fillWidth: true
                        text: view.connection.address || view.settings.serviceUrl
                        selectByMouse: true
                    }
                    Label { text: "Token" }
                    TextField {
                        id: token
                        objectName: "connectionToken"
                        Accessible.name: "Sign-in token"
                        Layout.fillWidth: true
                        echoMode: TextInput.Password
                        placeholderText: "paste the token from `veraltheim-service token issue`"
                        text: view.settings.token
                        selectByMouse: true
                    }
                    Item { implicitWidth: 1; implicitHeight: 1 }
                    RowLayout {
                        Button {
                            objectName: "connectButton"
                            text: "Sign in and connect"
                            Accessible.name: "Sign in and connect"
                            onClicked: view.connection.connectTo(address.text, token.text)
                        }
                        Button {
                            objectName: "disconnectButton"
                            text: "Disconnect"
                            Accessible.name: "Disconnect"
                            enabled: view.connection.linked
                            onClicked: view.connection.disconnectNow()
                        }
                    }
                }
            }

            GroupBox {
                title: "State"
                Layout.fillWidth: true
                GridLayout {
                    anchors.fill: parent
                    columns: 2
                    columnSpacing: 10
                    Label { text: "State" }
                    Label { objectName: "connectionState"; text: view.connection.state; font.bold: true; Accessible.name: "State " + text }
                    Label { text: "Round trip" }
                    Label { objectName: "connectionRtt"; text: view.connection.rttMs >= 0 ? view.connection.rttMs.toFixed(1) + " ms" : "\u2014" }
                    Label { text: "Security" }
                    Label {
                        objectName: "connectionTls"
                        text: view.connection.tls ? "encrypted: TLS (wss://)" : "not encrypted (ws://)"
                        Accessible.name: view.connection.tls ? "TLS on" : "TLS off"
                    }
                    Label { text: "Signed in as" }
                    Label { objectName: "connectionUser"; text: view.connection.user || "\u2014" }
                    Label { text: "Details" }
                    Label {
                        objectName: "connectionDetail"
                        text: view.connection.detail || "\u2014"
                        wrapMode: Text.Wrap
                        Layout.fillWidth: true
                    }
                }
            }
            Item { Layout.fillHeight: true }
        }

        GroupBox {
            title: "People connected (" + view.connection.people.count + ")"
            Layout.fillWidth: true
            Layout.fillHeight: true
            ListView {
                id: people
                objectName: "presenceList"
                Accessible.name: "People connected"
                anchors.fill: parent
                clip: true
                model: view.connection.people
                delegate: ItemDelegate {
                    required property string user
                    required property string detail
                    width: people.width
                    text: "\u25cf " + user + (detail ? "   " + detail : "")
                    Accessible.name: user
                }
                Label {
                    anchors.centerIn: parent
                    visible: people.count === 0
                    opacity: 0.6
                    text: "Nobody to show: not connected."
                }
            }
        }
    }
}
