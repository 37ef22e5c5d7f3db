pragma ComponentBehavior: Bound
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import Veraltheim

Item {
    id: view
    required property SettingsController settings
    objectName: "settingsView"

    ScrollView {
        anchors.fill: parent
        anchors.margins: 10
        contentWidth: availableWidth

        ColumnLayout {
            width: Math.min(parent.width, 640)
            spacing: 8

            GridLayout {
                columns: 2
                columnSpacing: 12
                rowSpacing: 8
                Layout.fillWidth: true

                Label { text: "Service address" }
                TextField {
                    id: url
                    objectName: "settingsServiceUrl"
                    Accessible.name: "Service address"
                    Layout.fillWidth: true
                    // the address in use (it may come from --service), else the saved one
                    text: view.settings.addressInUse || view.settings.serviceUrl
                    selectByMouse: true
                }
                Item {
                    visible: addressNote.visible
                    implicitWidth: 1; implicitHeight: 1
                }
                Label {
                    id: addressNote
                    objectName: "settingsAddressNote"
                    visible: view.settings.addressInUse !== "" && view.settings.addressInUse !== view.settings.serviceUrl
                    text: "In use for this run only (given with --service). Saved: " + view.settings.serviceUrl + ". Save to keep the one above."
                    wrapMode: Text.Wrap
                    opacity: 0.7
                    Layout.fillWidth: true
                }
                Label { text: "Token" }
                TextField {
                    id: token
                    objectName: "settingsToken"
                    Accessible.name: "Token"
                    Layout.fillWidth: true
                    echoMode: TextInput.Password
                    text: view.settings.addressInUse ? view.settings.tokenInUse : view.settings.token
                    selectByMouse: true
                }
                Label { text: "Name (no-auth services)" }
                TextField {
                    id: userName
                    objectName: "settingsUserName"
                    Accessible.name: "Your name"
                    Layout.fillWidth: true
                    text: view.settings.userName
                    placeholderText: "shown to others in presence and the run history"
                    selectByMouse: true
                }
                Label { text: "Trusted certificate" }
                TextField {
                    id: caFile
                    objectName: "settingsCaFile"
                    Accessible.name: "Trusted certificate file for wss"
                    Layout.fillWidth: true
                    text: view.settings.caFile
                    placeholderText: "PEM file of a self-signed service (wss:// only)"
                    selectByMouse: true
                }
                Label { text: "Run where (default)" }
                ComboBox {
                    id: route
                    objectName: "settingsRoute"
                    Accessible.name: "Default place to run"
                    model: view.settings.routes
                    currentIndex: view.settings.routes.indexOf(view.settings.route)
                }
                Label { text: "Largest input (MiB)" }
                SpinBox {
                    id: maxInput
                    objectName: "settingsMaxInput"
                    Accessible.name: "Largest input in MiB"
                    from: 1; to: 4096; editable: true
                    value: view.settings.maxInputMib
                }
                Label { text: "Local job deadline (s)" }
                SpinBox {
                    id: deadline
                    objectName: "settingsDeadline"
                    Accessible.name: "Local job deadline in seconds"
                    from: 1; to: 3600; editable: true
                    value: Math.round(view.settings.deadlineS)
                }
                Label { text: "Kernel cache folder" }
                TextField {
                    id: cacheDir
                    objectName: "settingsCacheDir"
                    Accessible.name: "Kernel cache folder"
                    Layout.fillWidth: true
                    text: view.settings.cacheDir
                    placeholderText: view.settings.effectiveCacheDir
                    selectByMouse: true
                }
            }
            RowLayout {
                Button {
                    objectName: "settingsSave"
                    text: "Save"
                    Accessible.name: "Save settings"
                    highlighted: true
                    onClicked: view.settings.save(url.text, token.text, route.currentText, maxInput.value, deadline.value, cacheDir.text, userName.text, caFile.text)
                }
                Label {
                    text: "Saved in " + view.settings.filePath
                    opacity: 0.7
                    elide: Text.ElideMiddle
                    Layout.fillWidth: true
                }
            }
            Label {
                text: "Keyboard: Ctrl+R runs, Esc cancels, Ctrl+1\u2026Ctrl+6 switch views. Colours follow the system (light or dark)."
                wrapMode: Text.Wrap
                opacity: 0.7
                Layout.fillWidth: true
            }
        }
    }
}
